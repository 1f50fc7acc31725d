"""Multiple-choice answers (ARC, CommonsenseQA): the choices shown lettered in the prompt, a
letter read back from the answer.

Only a letter among the question's choices counts, and never one inside a word: "Because"
is not B, and a bare lower-case "a" is an article. In parentheses any case is a letter.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ANSWER_IS = r"(?i:the answer is):?\s*"
_LETTER = r"(?:\((?P<p>[A-Za-z])\)|(?P<b>[A-Z])(?![A-Za-z]))"
_STRICT = re.compile(_ANSWER_IS + _LETTER)
_FLEXIBLE = re.compile(
    r"\((?P<p>[A-Za-z])\)"  # (B)
    r"|(?<![A-Za-z0-9(])(?P<c>[A-Z])\)"  # B)
    r"|(?i:answer is|answer:|option|choice)\s*(?P<b>[A-Z])(?![A-Za-z])"  # the answer is B, option B
)


def format_choices(question: str, texts: Sequence[str]) -> str:
    """The question as the prompt shows it: "…\\nAnswer Choices: (A) first (B) second"."""
    listed = " ".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(texts))
    return f"{question}\nAnswer Choices: {listed}"


def gold_letter(value: Any, labels: Sequence[str]) -> str:
    """The letter of the gold choice: `value` is one of the row's labels (ARC also uses
    "1".."4"), shown as the letter at its position; ValueError otherwise."""
    key = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if key in labels:
        return LETTERS[list(labels).index(key)]
    raise ValueError(f"is not one of the choice labels {', '.join(labels)}")


def strict_letter(text: str, choices: Sequence[str]) -> str | None:
    """The first "the answer is B" / "the answer is (B)" naming a valid letter."""
    return _first_valid(_STRICT.finditer(text), choices)


def flexible_letter(text: str, choices: Sequence[str]) -> str | None:
    """The last "(B)", "B)", "the answer is B" or "option B" naming a valid letter."""
    return _first_valid(reversed(list(_FLEXIBLE.finditer(text))), choices)


def _first_valid(matches, choices: Sequence[str]) -> str | None:
    for m in matches:
        letter = next(g for g in m.groups() if g is not None).upper()
        if letter in choices:
            return letter
    return None
