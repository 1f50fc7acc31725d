"""Parquet result datasets: documented schema, atomic part files, resume bookkeeping.

A dataset is a directory (local path or any pyarrow filesystem URI) of part files.
Each part is written under a hidden temporary name and renamed when complete, so a
reader (and a resumed run) never sees half a part; pyarrow ignores dot-files.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

RESULT_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("strategy", pa.string(), nullable=False),  # unique label, e.g. fixed_alpha(alpha=1.0,n_tokens=5)
        pa.field("strategy_name", pa.string()),
        pa.field("params", pa.string()),  # the strategy's parameters as JSON
        pa.field("alpha", pa.float64()),  # α the row actually used (0: teacher not asked)
        pa.field("n_tokens", pa.int64()),
        pa.field("tau0", pa.float64()),
        pa.field("lam", pa.float64()),
        pa.field("entropy_lo", pa.float64()),
        pa.field("entropy_hi", pa.float64()),
        pa.field("prompt_hash", pa.string()),
        pa.field("generated_text", pa.string()),
        pa.field("generated_token_ids", pa.list_(pa.int64())),
        pa.field("teacher_token_mask", pa.list_(pa.bool_())),  # per generated token: decided with the teacher
        pa.field("predicted_answer", pa.string()),
        pa.field("gold_answer", pa.string()),
        pa.field("correct", pa.bool_()),
        pa.field("finish_reason", pa.string()),
        pa.field("generated_tokens", pa.int64()),
        pa.field("student_tokens_processed", pa.int64()),
        pa.field("teacher_tokens_processed", pa.int64()),
        pa.field("teacher_tokens", pa.int64()),
        pa.field("teacher_changed_tokens", pa.int64()),
        pa.field("student_first_entropy", pa.float64()),
        pa.field("worker_id", pa.string()),
        pa.field("node_id", pa.string()),
        pa.field("latency_s", pa.float64()),  # this row's share of its batch's wall time
    ]
)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI such as s3://bucket/run."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(__import__("pathlib").Path(uri).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_part(fs: pafs.FileSystem, directory: str, name: str, rows: list[dict], schema: pa.Schema) -> None:
    fs.create_dir(directory, recursive=True)
    tmp, final = join(directory, f".tmp-{name}"), join(directory, name)
    table = pa.Table.from_pylist(rows, schema=schema)
    with fs.open_output_stream(tmp) as out:
        pq.write_table(table, out)
    fs.move(tmp, final)


def existing_parts(fs: pafs.FileSystem, directory: str) -> set[str]:
    info = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    return {i.base_name for i in info if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))}


def read_dataset(fs: pafs.FileSystem, directory: str) -> pa.Table:
    return pq.read_table(directory, filesystem=fs)


def write_json(fs: pafs.FileSystem, path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(obj, indent=2, default=str).encode())
    fs.move(tmp, path)


def read_json(fs: pafs.FileSystem, path: str) -> dict | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())
