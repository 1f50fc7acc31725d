"""Loading a benchmark's rows as `Example`s: the config's `DatasetSpec` names where they are
and which fields to read (its benchmark file's, or its own question/answer fields).

Local JSONL files are checked line by line before `datasets` loads them, so a bad row is
reported with its file and line number instead of an Arrow traceback; every row of a local
Parquet file is checked too, reported by row number (from 0, as example ids count). Hub
datasets (e.g. `openai/gsm8k`, config `main`) load through `datasets.load_dataset`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import datasets

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
    path = Path(spec.source).expanduser()
    if spec.is_local and path.suffix.lower() != ".parquet":
        total = _check_jsonl(path, reader)
        ds = _load_local(path, "json")
        where = str(path)
        if len(ds) != total:
            raise UserError(f"{path}: datasets read {len(ds)} rows, but the file has {total} non-blank lines")
    else:
        ds = _load_local(_readable(path), "parquet") if spec.is_local else _load_hub(spec)
        total = len(ds)
        where = str(path) if spec.is_local else spec.source
        missing = [f for f in reader.fields if f not in ds.column_names]
        if missing:
            raise UserError(
                f"{where}: no field(s) {', '.join(repr(f) for f in missing)}"
                f" (fields: {', '.join(ds.column_names)})"
            )
        if spec.is_local:
            _check_rows(ds, reader, where)
    if total == 0 or len(ds) == 0:
        raise UserError(f"dataset is empty: {where}")

    stop = total if spec.limit is None else min(total, spec.offset + spec.limit)
    indices = range(spec.offset, stop)
    if not indices:
        raise UserError(
            f"dataset is empty after offset={spec.offset}, limit={spec.limit}: {where} has {total} examples"
        )

    rows = ds.select(indices)
    examples: list[Example] = []
    problems: dict[str, list[int]] = {}
    for index, row in zip(indices, rows):
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


def _readable(path: Path) -> Path:
    """`path`, if it is a file this process may read; UserError otherwise."""
    if path.is_dir():
        raise UserError(f"dataset path is a directory, expected a JSONL or Parquet file: {path}")
    try:
        with path.open("rb"):
            return path
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except OSError as e:
        raise UserError(f"dataset file not readable: {path} ({e.strerror or e})") from None


def _refuse_bad(problems: dict[str, list[int]], where: str, noun: str, counting: str = "") -> None:
    """One error for every bad row of a file, grouped by problem, with where they are."""
    if problems:
        count = sum(len(v) for v in problems.values())
        raise UserError(f"{where}: {count} bad {noun}{'s' if count > 1 else ''}{counting}: {_describe(problems, noun)}")


def _check_rows(ds: datasets.Dataset, reader: RowReader, where: str) -> None:
    """Validate every row of a local Parquet file (rows counted from 0)."""
    problems: dict[str, list[int]] = {}
    for index, row in enumerate(ds):
        try:
            reader.read(row)
        except RowProblem as problem:
            problems.setdefault(str(problem), []).append(index)
    _refuse_bad(problems, where, "row", " (counted from 0)")


def _check_jsonl(path: Path, reader: RowReader) -> int:
    """Validate every line of a local JSONL file; return the number of (non-blank) rows."""
    data = _readable(path).read_bytes()

    problems: dict[str, list[int]] = {}
    rows = 0
    for lineno, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        rows += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.setdefault("not UTF-8 text", []).append(lineno)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if lineno == 1 and line.lstrip().startswith("["):
                raise UserError(
                    f"{path}: expected JSON Lines (one JSON object per line), found a JSON array"
                ) from None
            problems.setdefault("not valid JSON", []).append(lineno)
            continue
        if lineno == 1 and isinstance(row, list) and raw.strip() == data.strip():  # the whole file is one array
            raise UserError(f"{path}: expected JSON Lines (one JSON object per line), found a JSON array")
        try:
            reader.read(row)
        except RowProblem as problem:
            problems.setdefault(str(problem), []).append(lineno)
    _refuse_bad(problems, str(path), "line")
    if rows == 0:
        raise UserError(f"dataset is empty: {path}")
    return rows


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _load_local(path: Path, builder: str) -> datasets.Dataset:
    """A local file through `datasets`' "json" or "parquet" builder."""
    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # "Generating train split" for one local file
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # JSONL was checked line by line already: what is left is e.g. mixed column types
        raise UserError(f"{path}: datasets could not load it: {_one_line(e)}") from e
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _load_hub(spec: DatasetSpec) -> datasets.Dataset:
    check_hub_dataset(spec.source)
    try:
        return datasets.load_dataset(spec.source, spec.config, split=spec.split)
    except Exception as e:  # offline, unknown id, bad config or split, ...
        where = f"config {spec.config!r}, split {spec.split!r}"
        raise UserError(
            f"could not load Hub dataset '{spec.source}' ({where}): {type(e).__name__}: {_one_line(e)}"
        ) from e
