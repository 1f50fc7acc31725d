"""The package's two exception types, importable from every layer (this module imports nothing)."""


class UserError(Exception):
    """An expected, user-fixable problem: jobs print its message on one line and exit 2."""


class JobFailed(Exception):
    """A run that cannot finish for a reason that is not the user's input (a work unit that
    failed deterministically, or kept killing its worker): one line, exit 1."""


class Interrupted(Exception):
    """The user stopped the run (Ctrl-C, SIGTERM): one line saying how far it got, exit 130."""
