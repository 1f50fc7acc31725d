"""MATH answers: LaTeX expressions, read from the last \\boxed{...} and compared after
normalisation, numerically where both sides are numbers (\\frac{1}{2} == 0.5 == 1/2).

The normalisation follows the MATH paper's equivalence check in spirit: \\dfrac and \\tfrac
are \\frac, \\left/\\right, spacing commands, `$`, degrees, percent signs, a trailing period
and spaces do not matter, a unit written as \\text{ cm} is dropped, other \\text{...} is its
text, and a leading "x =" is dropped.
"""
from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

_BOXED = re.compile(r"\\(?:boxed|fbox)")
_STRICT = re.compile(r"(?i:the answer is):?\s*")
_UNIT = re.compile(r"\\(?:text|mbox|mathrm)\{\s[^{}]*\}")  # \text{ cm}: a unit after the value
_TEXT = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}")
_DROP = ("\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\ ", "^{\\circ}", "^\\circ", "\\circ", "\\%", "%", "\\$", "$")
_DECIMAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRAC = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_SLASH = re.compile(r"(-?\d+)/(-?\d+)")
_ASSIGNMENT = re.compile(r"[a-zA-Z]\w{0,2}=(?!=)")


def boxed(text: str, last: bool = True) -> str | None:
    """The content of the last (or first) \\boxed{...} in `text`, braces balanced (so
    \\boxed{\\frac{1}{\\sqrt{2}}} gives \\frac{1}{\\sqrt{2}}); also \\boxed 5. None if there
    is none or it never closes."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    start = starts[-1] if last else starts[0]
    if start < len(text) and text[start] == " ":  # \boxed 5: one token
        token = text[start:].split()
        return token[0].rstrip("$.") if token else None
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # \{ and \} are literal braces (set notation), not grouping
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def gold_math(value: Any) -> str:
    """A row's gold: the last \\boxed{} of a solution, else the value itself; canonical."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("is not a LaTeX answer")
    text = str(value)
    answer = normalize_math(boxed(text) if _BOXED.search(text) else text)
    if answer is None:
        raise ValueError("has no answer (an empty or unclosed \\boxed{})")
    return answer


def strict_math(text: str) -> str | None:
    """The answer of the first "The answer is X" sentence: its \\boxed{} if it has one,
    else its $...$, else the sentence's rest."""
    m = _STRICT.search(text)
    if m is None:
        return None
    rest = text[m.end():].split("\n", 1)[0].strip()
    if _BOXED.search(rest):
        return boxed(rest, last=False)
    if rest.startswith("$"):
        inner = rest.lstrip("$").split("$", 1)[0]
        return inner or None
    sentence = re.split(r"\.\s", rest, maxsplit=1)[0].rstrip(".").strip()
    return sentence or None


def flexible_math(text: str) -> str | None:
    """The last \\boxed{...}."""
    return boxed(text)


def normalize_math(answer: str | None) -> str | None:
    """Canonical text of a LaTeX answer; a number as a number ("\\frac{1}{2}" -> "0.5",
    "\\frac{1}{3}" -> "1/3"). None for nothing."""
    if answer is None:
        return None
    s = answer.replace("\n", " ").strip()
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = _UNIT.sub("", s)
    s = _TEXT.sub(r"\1", s)
    for piece in _DROP:
        s = s.replace(piece, "")
    s = s.replace(" ", "").rstrip(".")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)  # \frac{1}2
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)  # \frac1{2}
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)  # \sqrt2
    if _ASSIGNMENT.match(s) and s.count("=") == 1:  # "x=5": the value
        s = s.split("=", 1)[1]
    if not s:
        return None
    value = _number(s)
    return s if value is None else _number_text(value)


def math_equal(predicted: str | None, gold: str | None) -> bool:
    """Equal canonical texts (numbers are canonical as numbers, so this is numeric equality)."""
    return predicted is not None and gold is not None and predicted == gold


def _number(s: str) -> Fraction | None:
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _DECIMAL.fullmatch(s):
        return Fraction(Decimal(s))
    for pattern in (_FRAC, _SLASH):
        m = pattern.fullmatch(s)
        if m:
            sign, num, den = ("", *m.groups()) if pattern is _SLASH else m.groups()
            if int(den) == 0:
                return None
            value = Fraction(int(num), int(den))
            return -value if sign else value
    return None


def _number_text(value: Fraction) -> str:
    """A terminating decimal as a decimal ("0.5", "3"), any other rational as "p/q"."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
    return "0" if text in ("-0", "0") else text
