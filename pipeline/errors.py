"""The one exception type for mistakes a user can fix (bad paths, config, data)."""


class UserError(Exception):
    """An expected, user-fixable problem: jobs print its message on one line and exit 2."""
