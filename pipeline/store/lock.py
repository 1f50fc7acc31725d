"""One writer per output location: a lock file in --out naming the run that holds it."""
from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pyarrow.fs as pafs

from pipeline.errors import UserError
from pipeline.store.parts import join, read_json

LOCK_NAME = ".run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(fs: pafs.FileSystem, root: str, where: str, log=print) -> None:
    """Take the lock of `root`, or fail with a line naming the run that holds it. A lock
    left by a dead process on this host (or by this very process) is taken over; a lock
    that cannot be read is respected, since nothing of this project writes one."""
    path = join(root, LOCK_NAME)
    me = {"owner": os.environ.get("USER", ""), "host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    held = _read(fs, path)
    if held == {}:
        raise UserError(f"{where} has a lock file {path} that names no run; if no run is writing there, delete it")
    if held is not None:
        holder = f"pid {held.get('pid')} on {held.get('host')} (user {held.get('owner') or '?'}, since {held.get('started')})"
        mine = held["host"] == me["host"] and held["pid"] == me["pid"]  # or a dead run's, in a container restarted alike
        if held["host"] != me["host"]:
            raise UserError(f"{where} is being written by {holder}; if that run is gone, delete {path}")
        if not mine and _alive(held["pid"]):
            raise UserError(f"{where} is being written by another run: {holder}; wait for it or stop it")
        if not mine:
            log(f"taking over the lock of a run that died: {holder}")
        fs.delete_file(path)
    if fs.type_name == "local":
        _create_with_content(path, me, where)
    else:  # object stores have no exclusive create: the last writer wins, as it checks
        with fs.open_output_stream(path) as out:
            out.write(json.dumps(me).encode())
    if _read(fs, path) != me:
        raise UserError(f"{where} is being written by another run that started at the same moment")


def _create_with_content(path: str, content: dict, where: str) -> None:
    """Create the lock file complete or not at all: written under a private name, then linked
    to its own (a hard link fails if the name exists), so no reader ever sees it empty."""
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        json.dump(content, f)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise UserError(f"{where} is being written by another run that started at the same moment") from None
    except OSError:  # a mount without hard links: an exclusive create, written at once
        _create_exclusive(path, content, where)
    finally:
        os.unlink(tmp)


def _create_exclusive(path: str, content: dict, where: str) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise UserError(f"{where} is being written by another run that started at the same moment") from None
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)


def release(fs: pafs.FileSystem, root: str) -> None:
    path = join(root, LOCK_NAME)
    held = _read(fs, path)
    if held is not None and held.get("host") == socket.gethostname() and held.get("pid") == os.getpid():
        fs.delete_file(path)


def _read(fs: pafs.FileSystem, path: str) -> dict | None:
    """The lock's content; {} when it is not one this project writes; None when there is none."""
    try:
        held = read_json(fs, path)
    except ValueError:  # not JSON text
        return {}
    if held is None:
        return None
    valid = isinstance(held, dict) and isinstance(held.get("pid"), int) and held["pid"] > 0 and isinstance(held.get("host"), str)
    return held if valid else {}
