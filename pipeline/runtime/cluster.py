"""Joining Ray: the cluster of `ray job submit`, or a new local one on this machine."""
from __future__ import annotations

import logging

import ray

# Ray 2.60 turns token authentication on for every new local cluster (creating
# ~/.ray/auth_token when missing) and warns about it each time; the choice is right for
# a local run, so the warning only buries the job's own output.
_TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DropDefaultTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


def connect() -> None:
    """Join the running cluster under `ray job submit` (RAY_ADDRESS), else start a local one."""
    logger = logging.getLogger(_TOKEN_SETUP_LOGGER)
    if not any(isinstance(f, _DropDefaultTokenNotice) for f in logger.filters):
        logger.addFilter(_DropDefaultTokenNotice())
    ray.init(ignore_reinit_error=True)
