"""Where the extracted final answer lies in a generated text (CoT-decoding's confidence is
measured over the answer's tokens), for every answer type: the number after "The answer is"
on GSM8K, but the letter on ARC, yes/no on StrategyQA, the \\boxed{} content on MATH."""
from __future__ import annotations

import re
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
    # whole-word occurrences: the letter "B" is not the one in "But", nor "9" the one in "19"
    starts = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(answer)}(?!\w)", text)] or \
             [m.start() for m in re.finditer(re.escape(answer), text)]
    if not starts:
        return None
    # the strict form's first match after "answer is" is the scored one; the flexible, the last
    after = text.lower().find("answer is") if strict is not None else -1
    start = next((i for i in starts if i >= after), starts[-1]) if after >= 0 else starts[-1]
    return start, start + len(answer.rstrip(".,"))  # "9." ends a sentence: its period is not the answer's


def span_finder(answer_type: str, choices: Sequence[str] = ()) -> Callable[[str], Span | None]:
    """The span function of one benchmark's answers (`choices`: the valid letters of its choice questions)."""
    return partial(answer_span, kind=ANSWER_TYPES[answer_type], choices=tuple(choices))
