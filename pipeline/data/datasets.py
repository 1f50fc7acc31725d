"""Loading a benchmark's rows as `Example`s: the config's `DatasetSpec` names where they are
and which fields to read (its benchmark file's, or its own question/answer fields).

Local files are read here, whatever their container (`containers.py`: JSON Lines, JSON,
CSV, Parquet), with bounds; every bad row is reported with its file and line (or row,
counted from 0 as example ids count). Hub datasets (e.g. `openai/gsm8k`, config `main`)
load through `datasets.load_dataset`.
"""
from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Sequence
from pathlib import Path

import datasets

from pipeline.config.sections import DatasetSpec
from pipeline.data.example import Example
from pipeline.data.containers import read_file_rows
from pipeline.data.field_hints import mapping_hint
from pipeline.data.rows import RowProblem, RowReader
from pipeline.errors import UserError
from pipeline.hub import check_hub_dataset

_MAX_LISTED = 5


__all__ = ["Example", "dataset_fingerprint", "load_examples"]


def load_examples(spec: DatasetSpec, config_key: str = "dataset") -> list[Example]:
    """The rows `spec` selects, as `Example`s; `UserError` for missing, empty or malformed data.
    `config_key` is where the config holds `spec` (`datasets.1`), for the lines that map fields."""
    if spec.inferred:
        print(spec.inferred, flush=True)
    reader = RowReader.for_spec(spec)
    if spec.is_local:
        path = _regular_file(Path(spec.source).expanduser())
        where = str(path)
        rows = _local_rows(path, reader, spec.max_row_bytes, config_key)
    else:
        rows = _load_hub(spec)
        where = spec.source
        _check_fields(where, reader, rows.column_names, config_key)
        print(f"dataset {where}: a Hub dataset (config {spec.config}, split {spec.split}), {len(rows)} rows", flush=True)
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
    a device such as /dev/zero, which would be read forever, or a named pipe, whose opening
    blocks until something writes to it: so the type is checked before the file is opened)."""
    if path.is_dir():
        raise UserError(f"dataset path is a directory, expected a dataset file (JSON Lines, JSON, CSV, Parquet): {path}")
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise UserError(f"dataset path is not a regular file (a device, pipe or socket): {path}")
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except OSError as e:
        raise UserError(f"dataset file not readable: {path} ({e.strerror or e})") from None
    return path


def _refuse_bad(problems: dict[str, list[int]], where: str, noun: str, counting: str = "") -> None:
    """One error for every bad row of a file, grouped by problem, with where they are."""
    if problems:
        count = sum(len(v) for v in problems.values())
        raise UserError(f"{where}: {count} bad {noun}{'s' if count > 1 else ''}{counting}: {_describe(problems, noun)}")


def _local_rows(path: Path, reader: RowReader, max_row_bytes: int, config_key: str) -> list[dict]:
    """Every row of a local file, whatever its container, each checked; the container said in one line."""
    found = read_file_rows(path, max_row_bytes, reader.fields)
    if found.columns:  # the header, or the first object's keys
        _check_fields(str(path), reader, found.columns, config_key)
    problems = found.problems
    for position, row in found.rows:
        try:
            reader.read(row)
        except RowProblem as problem:
            problems.setdefault(str(problem), []).append(position)
    _refuse_bad(problems, str(path), found.unit, " (counted from 0)" if found.unit == "row" else "")
    if not found.rows:
        raise UserError(f"dataset is empty: {path}")
    print(f"dataset {path}: {found.format}, {len(found.rows)} rows", flush=True)
    return [row for _, row in found.rows]


def _check_fields(where: str, reader: RowReader, columns: Sequence[str], config_key: str) -> None:
    """Fields the reader needs that the data (its header, or its first row) lacks: one line
    naming them, the fields there are, and the `--set` lines that would map them."""
    missing = [f for f in reader.fields if f not in columns]
    if not missing:
        return
    raise UserError(f"{where}: no field(s) {', '.join(repr(f) for f in missing)} (fields: {', '.join(columns) or 'none'}); "
                    f"map this copy's fields, e.g. {mapping_hint(reader, columns, config_key)}")


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
