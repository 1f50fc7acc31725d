"""Where the extracted final answer lies in a generated text (CoT-decoding's confidence is
measured over the answer's tokens)."""
from __future__ import annotations

from pipeline.data.answers import extract_answer

_STRICT_PREFIX = "The answer is "


def answer_span(text: str) -> tuple[int, int] | None:
    """[start, end) character offsets of `extract_answer(text)` in `text`, or None when it
    finds no answer: the strict match where there is one, else the last number (the
    extraction's own two rules, so the span is the answer that gets scored)."""
    answer = extract_answer(text)
    if answer is None:
        return None
    strict = text.find(_STRICT_PREFIX + answer)
    start = strict + len(_STRICT_PREFIX) if strict >= 0 else text.rfind(answer)
    return start, start + len(answer.rstrip(".,"))  # "9." ends a sentence: its period is not the answer's
