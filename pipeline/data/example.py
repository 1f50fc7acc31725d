"""One question of a benchmark, with what scoring an answer to it needs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    id: str  # stable: f"{name}/{split}/{index:06d}" — same row, same id, across runs
    index: int  # row position in the whole dataset (offset included)
    question: str  # as the prompt shows it (a choice question's choices included)
    gold: str  # the gold answer, canonical for its answer type
    group: str | None = None  # the row's `group_field` value, when the dataset names one
    answer_type: str = "number"  # how answers are extracted and compared (pipeline/data/answer_types.py)
    choices: tuple[str, ...] = ()  # a choice question's valid letters, in order ("A", "B", ...)
    benchmark: str | None = None  # the benchmark the row comes from, when a benchmark file named it
