"""Parquet datasets on any pyarrow filesystem: atomic part files, resume bookkeeping, JSON side files.

A dataset is a directory (local path or any pyarrow filesystem URI) of part files.
Each part is written under a hidden temporary name and renamed when complete, so a
reader (and a resumed run) never sees half a part; pyarrow ignores dot-files.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import JobFailed, UserError


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI such as s3://bucket/run."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def check_output_location(out: str) -> None:
    """Under `ray job submit` the job runs in a disposable copy of the working directory:
    a relative --out would vanish with it."""
    submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    if submitted and "://" not in out and not Path(out).expanduser().is_absolute():
        raise UserError(f"--out {out} is relative: under ray job submit it would land in Ray's temporary copy of "
                        "the working directory; give an absolute path on shared storage or a URI such as s3://bucket/run")


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# footer metadata of a job's parts: which run (its resume key) and which unit wrote them
RUN_KEY, UNIT_KEY = b"limited_teacher.run", b"limited_teacher.unit"
SET_ASIDE = ".set-aside"  # hidden: readers of the dataset skip it


def write_part(fs: pafs.FileSystem, directory: str, name: str, rows: list[dict], schema: pa.Schema,
               run: str | None = None) -> None:
    """`name` may lie in a partition directory ("benchmark=gsm8k/part-b000000.parquet"). With
    `run`, the footer records it and the part's name, so a resumed run can tell its own parts.
    A failed write (a full disk) leaves no temporary file behind and ends the job in one line."""
    folder, _, base = name.rpartition("/")
    directory = join(directory, folder) if folder else directory
    tmp, final = join(directory, f".tmp-{uuid.uuid4().hex[:8]}-{base}"), join(directory, base)
    table = pa.Table.from_pylist(rows, schema=schema)
    if run is not None:
        table = table.replace_schema_metadata({**(schema.metadata or {}), RUN_KEY: run.encode(), UNIT_KEY: name.encode()})
    try:
        fs.create_dir(directory, recursive=True)
        with fs.open_output_stream(tmp) as out:
            pq.write_table(table, out)
        fs.move(tmp, final)
    except OSError as exc:
        _delete_quietly(fs, tmp)
        raise JobFailed(f"cannot write {final}: {str(exc).splitlines()[0]}; free space or fix the location, "
                        "then rerun the same command to resume") from None


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, pa.ArrowException):
        pass


def trusted_parts(fs: pafs.FileSystem, directory: str, present: set[str], expected: set[str], run: str,
                  log: Callable[[str], None] = print, unstamped_ok: bool = False) -> set[str]:
    """The finished parts a resumed run may keep: readable, named for one of its units, and
    written by this run (footer; `unstamped_ok`: a part written before footers were stamped
    counts as this run's, when the manifest beside it says it is). Any other part is moved
    into a hidden folder beside them, said in one line, and its unit runs again. `present`:
    the parts in `directory` (`existing_parts`)."""
    kept = set()
    for name in sorted(present):
        why = _distrust(fs, join(directory, name), name, name in expected, run, unstamped_ok)
        if why is None:
            kept.add(name)
            continue
        aside = join(directory, SET_ASIDE, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}-{name.replace('/', '_')}")
        fs.create_dir(join(directory, SET_ASIDE), recursive=True)
        fs.move(join(directory, name), aside)
        log(f"set aside {name} ({why}) as {aside}" + ("; its unit runs again" if name in expected else ""))
    return kept


def _distrust(fs: pafs.FileSystem, path: str, name: str, expected: bool, run: str, unstamped_ok: bool) -> str | None:
    """Why a part cannot be kept, or None."""
    try:
        footer = pq.read_metadata(path, filesystem=fs).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable: {str(exc).splitlines()[0][:120]}"
    if not expected:
        return "no unit of this run writes it"
    if unstamped_ok and RUN_KEY not in footer:
        return None
    if footer.get(UNIT_KEY) != name.encode() or footer.get(RUN_KEY) != run.encode():
        return "written by another run or configuration"
    return None


def existing_parts(fs: pafs.FileSystem, directory: str) -> set[str]:
    """Finished parts, as paths under `directory` ("part-b000000.parquet", or in a partition
    "benchmark=gsm8k/part-b000000.parquet"); hidden names (temporary parts) are skipped at any
    depth, as pyarrow skips them."""
    info = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=True))
    base = directory.rstrip("/") + "/"
    parts = set()
    for i in info:
        relative = i.path[len(base):] if i.path.startswith(base) else i.base_name
        if i.type == pafs.FileType.File and not any(p.startswith((".", "_")) for p in relative.split("/")):
            parts.add(relative)
    return parts


def read_dataset(fs: pafs.FileSystem, directory: str) -> pa.Table:
    return pq.read_table(directory, filesystem=fs)


@dataclass(frozen=True)
class PartDataset:
    """A job's Parquet dataset, read only as far as asked: its row count from the parts'
    footers, and the columns a summary needs (a driver never holds every row of a large run)."""

    fs: pafs.FileSystem
    directory: str

    def count_rows(self) -> int:
        return sum(pq.read_metadata(join(self.directory, name), filesystem=self.fs).num_rows
                   for name in existing_parts(self.fs, self.directory))

    def read(self, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
        """With `schema`, parts written before a column was added read it as nulls."""
        return pq.read_table(self.directory, filesystem=self.fs, columns=columns, schema=schema)


def write_json(fs: pafs.FileSystem, path: str, obj: dict) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(obj, indent=2, default=str).encode())
    fs.move(tmp, path)


def read_json(fs: pafs.FileSystem, path: str) -> Any:
    """The JSON value of a file; None when there is no file; ValueError when it is not JSON text."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet dataset a user named, with a one-line error when it cannot be read."""
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise UserError(f"cannot read dataset {path}: not found") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read dataset {path}: {str(exc).splitlines()[0]}") from None
