"""Which output directories a job may write into: new ones, empty ones, and ones this
project's jobs wrote (a marker file says so). Anything else — a user's folder, a shipped
artifact, the working directory — is refused before a byte is written, so a job never
overwrites or deletes a file it did not write.

Several jobs may share one run directory (evaluate, label and signals write disjoint names
into it); the marker lists the jobs that wrote there. Only the marker proves ownership: a
manifest.json naming a job is a file anyone may have written, so a folder holding one and no
marker is a user's, and refused like any other.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.errors import UserError
from pipeline.store.parts import check_output_location, filesystem, join, read_json

MARKER = ".limited-teacher-run.json"
# filesystems whose writes outlive the process; pyarrow's "mock" keeps them in memory only
DURABLE = {"local", "s3", "gcs", "hdfs", "abfs", "py"}


def output_filesystem(out: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of an output location, refusing ones that cannot hold results (or
    that would vanish with `ray job submit`'s copy of the working directory)."""
    if not out or not out.strip():
        raise UserError("--out is empty: name the output directory")
    check_output_location(out)
    try:
        fs, root = filesystem(out)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UserError(f"--out {out}: not a path or a filesystem URI pyarrow can write to ({str(exc).splitlines()[0]})") from None
    if fs.type_name not in DURABLE:
        raise UserError(f"--out {out}: the {fs.type_name!r} filesystem does not keep what is written; "
                        "give a local path or a URI such as s3://bucket/run")
    return fs, root


def claim_output(out: str, job: str) -> tuple[pafs.FileSystem, str]:
    """Make `out` this job's output: create it when new, take it when empty or already written
    by this project's jobs, refuse it otherwise. Returns (filesystem, path)."""
    fs, root = output_filesystem(out)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            raise UserError(f"--out {out} is a file, not a directory")
        marker = _read_marker(fs, root, out) if info.type == pafs.FileType.Directory else None
        if marker is None and info.type == pafs.FileType.Directory:
            names = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)))
            if names:
                raise UserError(f"--out {out} holds files no job of this project wrote ({names[0]}, ...) and no {MARKER}: "
                                "choose a new or empty directory")
        fs.create_dir(root, recursive=True)
        # written every time: it is also the probe that --out is writable
        _write_marker(fs, root, {"jobs": sorted({*(marker or {}).get("jobs", []), job})})
    except UserError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot write to --out {out}: {str(exc).splitlines()[0]}") from None
    return fs, root


def _read_marker(fs: pafs.FileSystem, root: str, out: str) -> dict | None:
    foreign = UserError(f"--out {out}: its {MARKER} is not this project's: choose a new directory")
    try:
        marker = read_json(fs, join(root, MARKER))
    except ValueError:  # not JSON text
        raise foreign from None
    jobs = marker.get("jobs") if isinstance(marker, dict) else None
    if marker is not None and (not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs)):
        raise foreign
    return marker


def _write_marker(fs: pafs.FileSystem, root: str, marker: dict) -> None:
    with fs.open_output_stream(join(root, MARKER)) as f:
        f.write(json.dumps(marker).encode())
