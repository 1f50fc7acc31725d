"""Where the extracted final answer lies in a generated text (CoT-decoding's confidence is
measured over the answer's tokens), for every answer type: the number after "The answer is"
on GSM8K, but the letter on ARC, yes/no on StrategyQA, the \\boxed{} content on MATH."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from pipeline.data.answer_types import ANSWER_TYPES, AnswerType

Span = tuple[int, int]


def answer_span(text: str, kind: AnswerType = ANSWER_TYPES["number"], choices: Sequence[str] = ()) -> Span | None:
    """[start, end) character offsets of the answer `kind` reads from `text` (its strict
    match where there is one, else its flexible one: the answer that gets scored), or None
    when it finds none."""
    strict = kind.strict(text, choices)
    answer = strict if strict is not None else kind.flexible(text, choices)
    if not answer:
        return None
    # the strict form's first match is after "answer is" (the scored one); else the last occurrence
    after = text.lower().find("answer is") if strict is not None else -1
    start = text.find(answer, after) if after >= 0 else -1
    if start < 0:
        start = text.rfind(answer)
    if start < 0:
        return None
    return start, start + len(answer.rstrip(".,"))  # "9." ends a sentence: its period is not the answer's


def span_finder(answer_type: str, choices: Sequence[str] = ()) -> Callable[[str], Span | None]:
    """The span function of one benchmark's answers (`choices`: the valid letters of its choice questions)."""
    return partial(answer_span, kind=ANSWER_TYPES[answer_type], choices=tuple(choices))
