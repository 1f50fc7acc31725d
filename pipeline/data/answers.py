"""Answer extraction (as lm-evaluation-harness gsm8k-cot does it) and numeric comparison.

Extraction returns the raw matched text; `normalize_number` turns it into a canonical
string so that "$1,000.00", "1000" and "1000." all compare equal.
"""
from __future__ import annotations

import re
from decimal import Decimal

# Strict: "The answer is N" (harness: `The answer is (\-?[0-9\.\,]+).`, plus an optional `$`).
# The harness also requires one character after the number; we do not, so an answer at the
# very end of the text still counts as strict. A trailing period is removed by normalization.
_STRICT = re.compile(r"The answer is (-?[$0-9.,]{2,}|-?[0-9]+)")
# Flexible: the last number anywhere (harness flexible-extract, last match).
_NUMBER = re.compile(r"-?[$0-9.,]{2,}|-?[0-9]+")
_DIGIT = re.compile(r"[0-9]")
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def extract_answer(text: str) -> str | None:
    """The first strict "The answer is N" match, else the last number in `text`, else None.

    Matches without a digit (e.g. "..." or "$.") are skipped rather than returned.
    """
    strict = extract_strict(text)
    return strict if strict is not None else extract_flexible(text)


def extract_strict(text: str) -> str | None:
    """The first "The answer is N" with a digit in N, as matched; None if there is none."""
    return next((m.group(1) for m in _STRICT.finditer(text) if _DIGIT.search(m.group(1))), None)


def extract_flexible(text: str) -> str | None:
    """The last number in `text` (with a digit), as matched; None if there is none."""
    numbers = [m for m in _NUMBER.findall(text) if _DIGIT.search(m)]
    return numbers[-1] if numbers else None


def _to_decimal(s: str | None) -> Decimal | None:
    if s is None:
        return None
    cleaned = s.strip().replace("$", "").replace(",", "").strip().rstrip(".")
    if not _PLAIN_DECIMAL.fullmatch(cleaned):  # no exponents, "nan", "inf" or underscores
        return None
    return Decimal(cleaned)


def normalize_number(s: str | None) -> str | None:
    """Canonical string for a number: "42.0" -> "42", "1,000" -> "1000", "$5" -> "5", "-0" -> "0".

    Strips `$`, commas, surrounding whitespace and a trailing period; None if not a number.
    """
    value = _to_decimal(s)
    if value is None:
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def answers_match(pred: str | None, gold: str | None) -> bool:
    """True when both parse as numbers and are numerically equal."""
    a, b = _to_decimal(pred), _to_decimal(gold)
    return a is not None and b is not None and a == b
