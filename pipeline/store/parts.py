"""Parquet datasets on any pyarrow filesystem: atomic part files, resume bookkeeping, JSON side files.

A dataset is a directory (local path or any pyarrow filesystem URI) of part files.
Each part is written under a hidden temporary name and renamed when complete, so a
reader (and a resumed run) never sees half a part; pyarrow ignores dot-files.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import UserError


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


def write_part(fs: pafs.FileSystem, directory: str, name: str, rows: list[dict], schema: pa.Schema) -> None:
    """`name` may lie in a partition directory ("benchmark=gsm8k/part-b000000.parquet")."""
    folder, _, name = name.rpartition("/")
    directory = join(directory, folder) if folder else directory
    fs.create_dir(directory, recursive=True)
    tmp, final = join(directory, f".tmp-{uuid.uuid4().hex[:8]}-{name}"), join(directory, name)
    table = pa.Table.from_pylist(rows, schema=schema)
    with fs.open_output_stream(tmp) as out:
        pq.write_table(table, out)
    fs.move(tmp, final)


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

    def read(self, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.directory, filesystem=self.fs, columns=columns)


def write_json(fs: pafs.FileSystem, path: str, obj: dict) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(obj, indent=2, default=str).encode())
    fs.move(tmp, path)


def read_json(fs: pafs.FileSystem, path: str) -> dict | None:
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
