"""Loading a benchmark's rows as `Example`s: the config's `DatasetSpec` names where they are and which fields to read.

Local JSONL files are checked line by line before `datasets` loads them, so a bad row is
reported with its file and line number instead of an Arrow traceback. Hub datasets (e.g.
`openai/gsm8k`, config `main`) load through `datasets.load_dataset`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from pipeline.config.sections import DatasetSpec
from pipeline.data.answers import gold_from_gsm8k, normalize_number
from pipeline.errors import UserError
from pipeline.hub import check_hub_dataset

_MAX_LISTED = 5


@dataclass(frozen=True)
class Example:
    id: str  # stable: f"{name}/{split}/{index:06d}" — same row, same id, across runs
    index: int  # row position in the whole dataset (offset included)
    question: str
    gold: str  # normalized gold answer
    group: str | None = None  # the row's `group_field` value, when the dataset names one


def load_examples(spec: DatasetSpec) -> list[Example]:
    """The rows `spec` selects, as `Example`s; `UserError` for missing, empty or malformed data."""
    if spec.inferred:
        print(spec.inferred, flush=True)
    if spec.is_local:
        path = Path(spec.source).expanduser()
        total = _check_jsonl(path, spec)
        ds = _load_local(path)
        where = str(path)
        if len(ds) != total:
            raise UserError(f"{path}: datasets read {len(ds)} rows, but the file has {total} non-blank lines")
    else:
        ds = _load_hub(spec)
        total = len(ds)
        where = spec.source
        missing = [f for f in (spec.question_field, spec.answer_field, spec.group_field) if f and f not in ds.column_names]
        if missing:
            raise UserError(
                f"{where}: no field(s) {', '.join(repr(f) for f in missing)}"
                f" (fields: {', '.join(ds.column_names)})"
            )
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
        problem = _row_problem(row, spec)
        if problem:
            problems.setdefault(problem, []).append(index)
            continue
        examples.append(
            Example(
                id=f"{spec.name}/{spec.split}/{index:06d}",
                index=index,
                question=row[spec.question_field],
                gold=_gold(row[spec.answer_field], spec.answer_format),
                group=None if spec.group_field is None else str(row.get(spec.group_field)),
            )
        )
    if problems:  # only reachable for Hub data: local files were checked line by line
        raise UserError(f"{where}: bad rows: {_describe(problems, 'row')}")
    return examples


def dataset_fingerprint(examples: Sequence[Example]) -> str:
    """First 16 hex chars of a sha256 over every example's id, question and gold."""
    payload = json.dumps([[ex.id, ex.question, ex.gold] for ex in examples], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------


def _gold(answer: Any, answer_format: str) -> str:
    """Normalized gold answer; ValueError when the field holds no usable number."""
    if answer_format == "gsm8k":
        if not isinstance(answer, str):
            raise ValueError("answer is not a string")
        return gold_from_gsm8k(answer)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError("answer is not a number")
    gold = normalize_number(str(answer))
    if gold is None:
        raise ValueError("answer is not a number")
    return gold


def _row_problem(row: Any, spec: DatasetSpec) -> str | None:
    """Why `row` cannot become an Example, in a few words; None if it can."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for field in (spec.question_field, spec.answer_field, spec.group_field):
        if field and (field not in row or row[field] is None):
            return f"missing field '{field}'"
    if not isinstance(row[spec.question_field], str):
        return f"field '{spec.question_field}' is not a string"
    try:
        _gold(row[spec.answer_field], spec.answer_format)
    except ValueError:
        answer = row[spec.answer_field]
        if spec.answer_format == "gsm8k" and not (isinstance(answer, str) and "#### " in answer):
            return f"'{spec.answer_field}' has no '#### ' before the answer"
        return f"'{spec.answer_field}' is not a number" + (" after '#### '" if spec.answer_format == "gsm8k" else "")
    return None


def _describe(problems: dict[str, list[int]], unit: str) -> str:
    """"missing field 'q' (lines 2, 4); not valid JSON (line 7)" with at most 5 numbers per reason."""
    parts = []
    for reason, where in problems.items():
        listed = ", ".join(str(n) for n in where[:_MAX_LISTED])
        more = f" …and {len(where) - _MAX_LISTED} more" if len(where) > _MAX_LISTED else ""
        parts.append(f"{reason} ({unit}{'s' if len(where) > 1 else ''} {listed}{more})")
    return "; ".join(parts)


def _check_jsonl(path: Path, spec: DatasetSpec) -> int:
    """Validate every line of a local JSONL file; return the number of (non-blank) rows."""
    if path.is_dir():
        raise UserError(f"dataset path is a directory, expected a JSONL file: {path}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except OSError as e:
        raise UserError(f"dataset file not readable: {path} ({e.strerror or e})") from None

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
        problem = _row_problem(row, spec)
        if problem:
            problems.setdefault(problem, []).append(lineno)
    if problems:
        count = sum(len(v) for v in problems.values())
        raise UserError(f"{path}: {count} bad line{'s' if count > 1 else ''}: {_describe(problems, 'line')}")
    if rows == 0:
        raise UserError(f"dataset is empty: {path}")
    return rows


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _load_local(path: Path) -> datasets.Dataset:
    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # "Generating train split" for a file already checked line by line
    try:
        return datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # checked line by line already; what is left is e.g. mixed column types
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
