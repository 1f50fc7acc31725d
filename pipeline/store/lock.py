"""One writer per output location: a lock file in --out naming the run that holds it."""
from __future__ import annotations

import json
import os
import socket
import time

import pyarrow.fs as pafs

from pipeline.errors import UserError
from pipeline.store.parts import join

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
    left by a dead process on this host (or by this very process) is taken over."""
    path = join(root, LOCK_NAME)
    me = {"owner": os.environ.get("USER", ""), "host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    held = _read(fs, path)
    if held == {}:
        log(f"taking over an unreadable lock file {path}")
    elif held is not None and not (held.get("host") == me["host"] and held.get("pid") == me["pid"]):
        holder = f"pid {held.get('pid')} on {held.get('host')} (user {held.get('owner') or '?'}, since {held.get('started')})"
        if held.get("host") != me["host"]:
            raise UserError(f"{where} is being written by {holder}; if that run is gone, delete {path}")
        if _alive(int(held.get("pid", -1))):
            raise UserError(f"{where} is being written by another run: {holder}; wait for it or stop it")
        log(f"taking over the lock of a run that died: {holder}")
    if fs.type_name == "local" and held is None:
        try:  # atomic create: of two drivers starting together, one gets the lock
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise UserError(f"{where} is being written by another run that started at the same moment") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(me).encode())


def release(fs: pafs.FileSystem, root: str) -> None:
    path = join(root, LOCK_NAME)
    held = _read(fs, path)
    if held is not None and held.get("host") == socket.gethostname() and held.get("pid") == os.getpid():
        fs.delete_file(path)


def _read(fs: pafs.FileSystem, path: str) -> dict | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        try:
            return json.loads(f.read().decode() or "{}")
        except json.JSONDecodeError:
            return {}
