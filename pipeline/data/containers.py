"""A local dataset file's rows, whatever container holds them, told from its content (not its
name): JSON Lines, a JSON array of objects, a JSON object with its rows in a list under one
key (a BIG-bench task's `examples`), CSV or TSV, or Parquet.

Rows come back as they are, each with where it is (a line number, or a row index counted from
0), so one message can list every bad row. A BIG-bench row's `target_scores` gives the row an
`answer` (the option scored highest), unless it has one.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError

_SNIFF_BYTES = 1 << 16
_LIST_KEYS = ("examples", "data", "rows", "instances")  # tried in this order when several keys hold rows
_NOT_JSON, _TOO_LONG, _TOO_DEEP = object(), object(), object()  # what a first line can be besides a JSON value
# Python's JSON parser recurses once per level of nesting: a value nested past the recursion
# limit (about 1,000 levels) raises RecursionError, said as this (no dataset row is that deep)
_TOO_DEEP_TEXT = "JSON nested too deeply to read"


@dataclass
class FileRows:
    """A file's rows, in order, with their positions; lines that are not rows, by reason."""

    format: str  # in words, for the line the job prints: "JSON Lines", "a BIG-bench task (JSON, 'examples')"
    unit: str  # what a position counts: "line" or "row" (rows from 0)
    rows: list[tuple[int, Any]] = field(default_factory=list)
    problems: dict[str, list[int]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # a table's header; for JSON, the first row's keys

    def add_problem(self, reason: str, position: int) -> None:
        self.problems.setdefault(reason, []).append(position)


def read_file_rows(path: Path, max_row_bytes: int, row_fields: tuple[str, ...]) -> FileRows:
    """Every row of `path`. `row_fields` (the fields a row must have) tell a one-line JSON
    object holding rows under a key from a JSON Lines file of one row."""
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    if head.startswith(b"PAR1"):
        return _parquet(path, row_fields)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text and len(head) < _SNIFF_BYTES:
        raise UserError(f"dataset is empty: {path}")
    if text.startswith("["):  # a JSON array, read whole as a document must be; else JSON Lines of arrays
        doc = _parse_json(path)
        return _json_document(path, doc) if isinstance(doc, list) else _jsonl(path, max_row_bytes)
    if text.startswith("{"):
        first = _first_row(path, max_row_bytes)
        whole = first in (_NOT_JSON, _TOO_LONG)  # not a row on its own: perhaps one object over the file
        if whole or _holds_rows(first, row_fields, _LIST_KEYS):
            doc = _parse_json(path)
            # rows under a key (a one-line object only under a usual one); an object over several
            # lines without rows is said as such, a line too long is JSON Lines' to refuse
            if _holds_rows(doc, row_fields, None if whole else _LIST_KEYS) or (first is _NOT_JSON and isinstance(doc, dict)):
                return _json_document(path, doc)
        return _jsonl(path, max_row_bytes)
    return _table(path, text, max_row_bytes)


def _holds_rows(doc: Any, row_fields: tuple[str, ...], keys: tuple[str, ...] | None) -> bool:
    """A JSON object that is not itself a row but has rows under a key (one of `keys`, if given)."""
    if not isinstance(doc, dict) or set(row_fields) & set(doc):
        return False
    key = _rows_key(doc)
    return key is not None and (keys is None or key in keys)


def _first_row(path: Path, max_row_bytes: int) -> Any:
    """The file's first non-blank line as JSON, read with the row bound; _NOT_JSON where it is
    not whole JSON on its own (the start of a document over lines), _TOO_LONG beyond the bound,
    _TOO_DEEP where it is a row nested too deeply (JSON Lines refuses it by its line number)."""
    with path.open("rb") as f:
        for raw in iter(lambda: f.readline(max_row_bytes + 1), b""):
            if not raw.strip():
                continue
            if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
                return _TOO_LONG
            try:
                return json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return _NOT_JSON
            except RecursionError:
                return _TOO_DEEP
    return _NOT_JSON


def _parse_json(path: Path) -> Any:
    """The file as one JSON value; None where it is not one (JSON Lines, or broken)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    except RecursionError:
        raise UserError(f"{path}: {_TOO_DEEP_TEXT} (nested more than about {sys.getrecursionlimit():,} levels)") from None


def _jsonl(path: Path, max_row_bytes: int) -> FileRows:
    """Line by line with a bound on a line's length: a file that is not JSON Lines fails at its
    first long line instead of filling memory."""
    out = FileRows("JSON Lines", "line")
    with path.open("rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(max_row_bytes + 1), b""), start=1):
            if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
                raise UserError(f"{path}: line {lineno} is longer than dataset.max_row_bytes ({max_row_bytes:,} bytes): "
                                "not a JSON Lines dataset, or raise the limit")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8-sig"))
            except UnicodeDecodeError:
                out.add_problem("not UTF-8 text", lineno)
                continue
            except json.JSONDecodeError:
                out.add_problem("not valid JSON", lineno)
                continue
            except RecursionError:
                out.add_problem(_TOO_DEEP_TEXT, lineno)
                continue
            out.rows.append((lineno, row))
    out.columns = _keys(out.rows)
    return out


def _json_document(path: Path, doc: Any) -> FileRows:
    """A whole-file JSON array of rows, or an object with its rows in a list under one key."""
    if isinstance(doc, list):
        out = FileRows("a JSON array", "row", list(enumerate(doc)))
    elif isinstance(doc, dict):
        key = _rows_key(doc)
        if key is None:
            raise UserError(f"{path}: a JSON object without a list of rows under any key (keys: {', '.join(map(str, doc)) or 'none'})")
        big_bench = any(isinstance(r, dict) and "target_scores" in r for r in doc[key])
        what = "a BIG-bench task" if big_bench else "a JSON object"
        out = FileRows(f"{what} (rows under '{key}')", "row", [(i, _scored_answer(r)) for i, r in enumerate(doc[key])])
    else:
        raise UserError(f"{path}: a JSON {type(doc).__name__}, not rows")
    out.columns = _keys(out.rows)
    return out


def _scored_answer(row: dict) -> dict:
    """A BIG-bench row with its `answer`: the `target_scores` option scored highest ({"Yes": 1, "No": 0}: "Yes")."""
    scores = row.get("target_scores")
    if "answer" in row or not isinstance(scores, dict) or not scores:
        return row
    if not all(isinstance(v, (int, float)) for v in scores.values()):
        return row
    return {**row, "answer": max(scores, key=scores.get)}


def _rows_key(doc: dict) -> str | None:
    """The key of `doc` that holds its rows: the one list of objects, else the first of _LIST_KEYS."""
    keys = [k for k, v in doc.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    if len(keys) == 1:
        return keys[0]
    return next((k for k in _LIST_KEYS if k in keys), None)


def _table(path: Path, text: str, max_row_bytes: int) -> FileRows:
    """CSV or TSV (the delimiter sniffed from the header), every value a string, as the file holds it."""
    first = text.split("\n", 1)[0]
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",\t;|") if first else None
    except csv.Error:
        dialect = None
    if dialect is None:
        raise UserError(f"{path}: not a dataset file this job reads (JSON Lines, a JSON array or object, CSV or TSV, Parquet)")
    name = {"\t": "TSV"}.get(dialect.delimiter, f"CSV ('{dialect.delimiter}'-separated)")
    out = FileRows(name, "line")
    limit = csv.field_size_limit(max_row_bytes)  # a process-wide setting: put back below
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            records = csv.reader(f, delimiter=dialect.delimiter, skipinitialspace=dialect.skipinitialspace)
            while True:
                start = records.line_num + 1  # where the next record begins (a quoted field may span lines)
                record = next(records, None)
                if record is None:
                    break
                if not record:  # a blank line
                    continue
                if not out.columns:
                    out.columns = tuple(record)
                elif len(record) > len(out.columns):
                    out.add_problem("more values than the header has columns", start)
                else:
                    out.rows.append((start, dict(zip(out.columns, record + [None] * (len(out.columns) - len(record))))))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV file: {e}") from None
    finally:
        csv.field_size_limit(limit)
    return out


def _parquet(path: Path, row_fields: tuple[str, ...]) -> FileRows:
    """The columns rows are read from (a wide file's others are not converted)."""
    try:
        names = tuple(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[f for f in row_fields if f in names])
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{path}: not a readable Parquet file: {str(e).strip().splitlines()[0][:300]}") from None
    return FileRows("Parquet", "row", list(enumerate(table.to_pylist())), columns=names)


def _keys(rows: list[tuple[int, Any]]) -> tuple[str, ...]:
    first = next((row for _, row in rows if isinstance(row, dict)), {})
    return tuple(str(k) for k in first)
