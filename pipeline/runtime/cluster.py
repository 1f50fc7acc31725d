"""Joining Ray: the cluster the user named, or a new local one that belongs to this job.

Ray's own `ray.init()` joins whatever cluster `/tmp/ray/ray_current_cluster` names when
RAY_ADDRESS is unset: another user's `ray start` cluster, or the dead address a killed head
left behind (every later job then hangs). So a job joins only a cluster named by RAY_ADDRESS
(`ray job submit` sets it for the driver) and otherwise starts its own, which Ray ties to
this process: it ends when the driver exits, however the driver ends.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator

import ray
import ray._private.parameter

ADDRESS_VARIABLE = "RAY_ADDRESS"


def named_address() -> str | None:
    """The cluster address the user (or `ray job submit`) named, if any."""
    return os.environ.get(ADDRESS_VARIABLE, "").strip() or None


def connect() -> str:
    """Join the named cluster, else start a private local one; one line says which."""
    if ray.is_initialized():
        return "already connected"
    address = named_address()
    if address is not None:
        ray.init(address=address)
        where = f"joined the Ray cluster at {address} (RAY_ADDRESS)"
    else:
        _token_for_private_cluster()
        with _agent_port_of_its_own():
            context = ray.init(address="local")
        where = f"started a local Ray cluster for this job ({context.address_info['gcs_address']}); it ends with the job"
    _sigterm_as_interrupt()
    print(where, flush=True)
    return where


def _sigterm_as_interrupt() -> None:
    """Ray's core installs a SIGTERM handler of its own when it connects (a stack dump, then
    the process dies mid-write); a scheduler's SIGTERM should end a job as Ctrl-C does: the
    parts written stay, the lock goes, one line says how far it got."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def _agent_port_of_its_own() -> Iterator[None]:
    """`ray.init` gives a local cluster's dashboard agent the fixed port 52365, which every
    `ray start` head on the machine wants too: whichever comes second has no job agent, and
    `ray job submit` to it fails ("No available agent"). A job's own cluster takes a free port
    instead; `ray.init` has no argument for it, so the parameters it builds get it."""
    original = ray._private.parameter.RayParams
    port = _free_port()

    class OwnAgentPort(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    ray._private.parameter.RayParams = OwnAgentPort
    try:
        yield
    finally:
        ray._private.parameter.RayParams = original


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _token_for_private_cluster() -> None:
    """Token authentication for a local cluster without touching `~/.ray/auth_token`.

    Ray 2.60 enables token auth for new local clusters and, when no token exists, writes
    one to the user's home. A token in this process's environment reaches the cluster's
    processes (they inherit it) and nothing is written; a token the user already set is kept.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Importing ray has already read both settings into its C++ config and token cache;
    # Ray's own token setup refreshes them the same way (a Ray without token auth has neither)
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
