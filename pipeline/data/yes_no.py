"""Yes/no answers (StrategyQA): canonical "yes" or "no", whatever the case or punctuation."""
from __future__ import annotations

import re
from typing import Any

_STRICT = re.compile(r"\bthe answer is:?\s*\**\s*(yes|no)\b", re.IGNORECASE)
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)  # "Yesterday" and "nothing" are not answers
_GOLD = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}


def gold_yes_no(value: Any) -> str:
    """A row's gold: a boolean, or the text yes/no/true/false; ValueError otherwise."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.strip().lower().rstrip(".") in _GOLD:
        return _GOLD[value.strip().lower().rstrip(".")]
    raise ValueError("is not yes/no (or true/false)")


def strict_yes_no(text: str) -> str | None:
    """The first "the answer is yes/no" (any case), as matched."""
    m = _STRICT.search(text)
    return m.group(1) if m else None


def flexible_yes_no(text: str) -> str | None:
    """The last standalone word yes or no, as matched."""
    words = _WORD.findall(text)
    return words[-1] if words else None
