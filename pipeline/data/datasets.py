"""Loading a benchmark's rows as `Example`s: the config's `DatasetSpec` names where they are
and which fields to read (its benchmark file's, or its own question/answer fields).

Local files are read here, from their content, with bounds: JSONL line by line (a bad row
is reported with its file and line number), Parquet through pyarrow (rows numbered from 0,
as example ids count). Hub datasets (e.g. `openai/gsm8k`, config `main`) load through
`datasets.load_dataset`.
"""
from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Sequence
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.sections import DatasetSpec
from pipeline.data.example import Example
from pipeline.data.rows import RowProblem, RowReader
from pipeline.errors import UserError
from pipeline.hub import check_hub_dataset

_MAX_LISTED = 5


__all__ = ["Example", "dataset_fingerprint", "load_examples"]


def load_examples(spec: DatasetSpec) -> list[Example]:
    """The rows `spec` selects, as `Example`s; `UserError` for missing, empty or malformed data."""
    if spec.inferred:
        print(spec.inferred, flush=True)
    reader = RowReader.for_spec(spec)
    if spec.is_local:
        path = _regular_file(Path(spec.source).expanduser())
        where = str(path)
        rows = _parquet_rows(path, reader) if path.suffix.lower() == ".parquet" else _jsonl_rows(path, reader, spec.max_row_bytes)
    else:
        rows = _load_hub(spec)
        where = spec.source
        missing = [f for f in reader.fields if f not in rows.column_names]
        if missing:
            raise UserError(f"{where}: no field(s) {', '.join(repr(f) for f in missing)} (fields: {', '.join(rows.column_names)})")
    total = len(rows)
    if total == 0:
        raise UserError(f"dataset is empty: {where}")

    stop = total if spec.limit is None else min(total, spec.offset + spec.limit)
    indices = range(spec.offset, stop)
    if not indices:
        raise UserError(
            f"dataset is empty after offset={spec.offset}, limit={spec.limit}: {where} has {total} examples"
        )
    selected = rows.select(indices) if isinstance(rows, datasets.Dataset) else rows[spec.offset:stop]
    examples: list[Example] = []
    problems: dict[str, list[int]] = {}
    for index, row in zip(indices, selected):
        try:
            read = reader.read(row)
        except RowProblem as problem:
            problems.setdefault(str(problem), []).append(index)
            continue
        examples.append(
            Example(
                id=f"{spec.name}/{spec.split}/{index:06d}",
                index=index,
                question=read.question,
                gold=read.gold,
                group=read.group,
                answer_type=reader.kind.name,
                choices=read.choices,
                benchmark=reader.benchmark,
            )
        )
    if problems:  # only reachable for Hub data: local files were checked row by row
        raise UserError(f"{where}: bad rows: {_describe(problems, 'row')}")
    return examples


def dataset_fingerprint(examples: Sequence[Example]) -> str:
    """First 16 hex chars of a sha256 over every example's id, question and gold."""
    payload = json.dumps([[ex.id, ex.question, ex.gold] for ex in examples], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------


def _describe(problems: dict[str, list[int]], unit: str) -> str:
    """"missing field 'q' (lines 2, 4); not valid JSON (line 7)" with at most 5 numbers per reason."""
    parts = []
    for reason, where in problems.items():
        listed = ", ".join(str(n) for n in where[:_MAX_LISTED])
        more = f" …and {len(where) - _MAX_LISTED} more" if len(where) > _MAX_LISTED else ""
        parts.append(f"{reason} ({unit}{'s' if len(where) > 1 else ''} {listed}{more})")
    return "; ".join(parts)


def _regular_file(path: Path) -> Path:
    """`path`, if it is a regular file this process may read; UserError otherwise (a directory,
    or a device such as /dev/zero, which would be read forever)."""
    if path.is_dir():
        raise UserError(f"dataset path is a directory, expected a JSONL or Parquet file: {path}")
    try:
        info = path.stat()
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except OSError as e:
        raise UserError(f"dataset file not readable: {path} ({e.strerror or e})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"dataset path is not a regular file (a device, pipe or socket): {path}")
    return path


def _refuse_bad(problems: dict[str, list[int]], where: str, noun: str, counting: str = "") -> None:
    """One error for every bad row of a file, grouped by problem, with where they are."""
    if problems:
        count = sum(len(v) for v in problems.values())
        raise UserError(f"{where}: {count} bad {noun}{'s' if count > 1 else ''}{counting}: {_describe(problems, noun)}")


def _parquet_rows(path: Path, reader: RowReader) -> list[dict]:
    """Every row of a local Parquet file, each checked (rows counted from 0, as example ids count)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{path}: not a readable Parquet file: {_one_line(e)}") from None
    missing = [f for f in reader.fields if f not in table.column_names]
    if missing:
        raise UserError(f"{path}: no field(s) {', '.join(repr(f) for f in missing)} (fields: {', '.join(table.column_names)})")
    rows = table.select(list(reader.fields)).to_pylist()
    problems: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        try:
            reader.read(row)
        except RowProblem as problem:
            problems.setdefault(str(problem), []).append(index)
    _refuse_bad(problems, str(path), "row", " (counted from 0)")
    return rows


def _jsonl_rows(path: Path, reader: RowReader, max_row_bytes: int) -> list[dict]:
    """Every (non-blank) row of a local JSONL file, each checked, read line by line with a
    bound on a line's length: a file that is not JSON Lines fails at its first long line
    instead of filling memory. Parsed here rather than by `datasets`, whose cache of local
    files is keyed on path and modification time: a file rewritten with its time restored
    (`cp -p`, `rsync -a`) would come back with its old rows."""
    problems: dict[str, list[int]] = {}
    rows: list[dict] = []
    first_is_array, nonblank = False, 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(max_row_bytes + 1), b""), start=1):
            if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
                raise UserError(f"{path}: line {lineno} is longer than dataset.max_row_bytes ({max_row_bytes:,} bytes): "
                                "not a JSON Lines dataset, or raise the limit")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.setdefault("not UTF-8 text", []).append(lineno)
                continue
            except json.JSONDecodeError:
                if lineno == 1 and raw.lstrip().startswith(b"["):  # an array over several lines
                    raise UserError(f"{path}: expected JSON Lines (one JSON object per line), found a JSON array") from None
                problems.setdefault("not valid JSON", []).append(lineno)
                continue
            first_is_array = first_is_array or (lineno == 1 and isinstance(row, list))
            nonblank += 1
            try:
                reader.read(row)
            except RowProblem as problem:
                problems.setdefault(str(problem), []).append(lineno)
                continue
            rows.append(row)
    if first_is_array and nonblank == 1:  # the whole file is one array
        raise UserError(f"{path}: expected JSON Lines (one JSON object per line), found a JSON array")
    _refuse_bad(problems, str(path), "line")
    if not rows:
        raise UserError(f"dataset is empty: {path}")
    return rows


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _load_hub(spec: DatasetSpec) -> datasets.Dataset:
    check_hub_dataset(spec.source)
    try:
        return datasets.load_dataset(spec.source, spec.config, split=spec.split)
    except Exception as e:  # offline, unknown id, bad config or split, ...
        where = f"config {spec.config!r}, split {spec.split!r}"
        raise UserError(
            f"could not load Hub dataset '{spec.source}' ({where}): {type(e).__name__}: {_one_line(e)}"
        ) from e
