"""Answer types: how a benchmark's gold answer is read from a row, how an answer is read from
a generated text, strictly and flexibly, and how the two are compared.

Strict extraction wants the prompt's own form ("The answer is X"); flexible extraction
takes what a less obedient model wrote (the last number, yes/no word, choice letter or
\\boxed{}). A score reports both, and `correct` is the strict one when the text has a
strict answer, else the flexible one: lm-evaluation-harness's two filters, one rule.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.data import answers, choice_answers, latex_answers, yes_no
from pipeline.data.example import Example
from pipeline.errors import UserError


@dataclass(frozen=True)
class Score:
    answer: str | None  # the canonical answer `correct` judged (None: no answer found)
    correct: bool  # strict when the text has a strict answer, else flexible
    correct_strict: bool
    correct_flexible: bool


@dataclass(frozen=True)
class AnswerType:
    """Extractors return the text as matched (None: no match); `canonical` makes it comparable."""

    name: str
    gold: Callable[[Any, Sequence[str]], str]  # (row value, choice labels) -> canonical gold; ValueError(reason)
    strict: Callable[[str, Sequence[str]], str | None]  # (text, valid letters) -> raw match
    flexible: Callable[[str, Sequence[str]], str | None]
    canonical: Callable[[str | None], str | None]
    match: Callable[[str | None, str], bool]


def _number_gold(value: Any, labels: Sequence[str]) -> str:
    if isinstance(value, list) and len(value) == 1:  # MultiArith's lSolutions: [42.0]
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("is not a number")
    gold = answers.normalize_number(str(value))
    if gold is None:
        raise ValueError("is not a number")
    return gold


def _same(a: str | None, b: str) -> bool:
    return a is not None and a == b


def _upper(s: str | None) -> str | None:
    return None if s is None else s.upper()


def _lower(s: str | None) -> str | None:
    return None if s is None else s.lower()


# the names are also listed in pipeline/config/benchmark_spec.py, which checks benchmark files
ANSWER_TYPES: dict[str, AnswerType] = {
    t.name: t
    for t in (
        AnswerType("number", _number_gold, lambda t, c: answers.extract_strict(t), lambda t, c: answers.extract_flexible(t),
                   answers.normalize_number, answers.answers_match),
        AnswerType("yes_no", lambda v, c: yes_no.gold_yes_no(v), lambda t, c: yes_no.strict_yes_no(t),
                   lambda t, c: yes_no.flexible_yes_no(t), _lower, _same),
        AnswerType("choice", choice_answers.gold_letter, choice_answers.strict_letter, choice_answers.flexible_letter,
                   _upper, _same),
        AnswerType("math", lambda v, c: latex_answers.gold_math(v), lambda t, c: latex_answers.strict_math(t),
                   lambda t, c: latex_answers.flexible_math(t), latex_answers.normalize_math, latex_answers.math_equal),
    )
}


def answer_type(name: str) -> AnswerType:
    if name not in ANSWER_TYPES:
        raise UserError(f"unknown answer type {name!r} (known: {', '.join(ANSWER_TYPES)})")
    return ANSWER_TYPES[name]


def score(text: str, example: Example) -> Score:
    """`text` (a generated answer) against `example`'s gold, the way its answer type says."""
    kind = answer_type(example.answer_type)
    raw_strict, raw_flexible = kind.strict(text, example.choices), kind.flexible(text, example.choices)
    strict, flexible = kind.canonical(raw_strict), kind.canonical(raw_flexible)
    ok_strict = raw_strict is not None and kind.match(strict, example.gold)
    ok_flexible = raw_flexible is not None and kind.match(flexible, example.gold)
    if raw_strict is not None:
        return Score(strict, ok_strict, ok_strict, ok_flexible)
    return Score(flexible, ok_flexible, ok_strict, ok_flexible)
