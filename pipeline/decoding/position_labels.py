"""Position labels: along the student's greedy answer, at its M most uncertain steps, whether
one teacher token there (mixed at each α of a small grid, the student alone before and after)
makes the answer right: what a `budget` strategy is calibrated on.

Work is shared as the α tree shares it: one greedy decode gives the answer and the student's
uncertainty at every step; one prefill per model of every labelled prefix (prompt + the
greedy tokens before the step) gives both distributions there; the α of the grid are grouped
by the token they pick, a token that is the student's own continues as the greedy answer
does, and every other distinct token is continued once, all of a batch together, from the
student's prefilled cache.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import torch

from pipeline.config.sections import PositionSettings
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.teacher_next import TeacherNext, ask_for, mixed_argmax
from pipeline.engine.interface import Prompt
from pipeline.engine.steps import decode_steps


@dataclass
class PositionLabels:
    """One example's: the greedy answer, the student's uncertainty at each of its steps, and
    per labelled step (in step order) the mixed token and its continuation per grid α."""

    greedy: Generation
    entropy: list[float]
    margin: list[float]
    steps: list[int] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)  # [step][α]
    answers: list[list[Generation]] = field(default_factory=list)  # [step][α]: the greedy one where the token is its own
    student_tokens_processed: int = 0
    teacher_tokens_processed: int = 0


class _Trace:
    """A step hook that only records the student's entropy and margin at every step."""


    def __init__(self, n: int):
        self.entropy: list[list[float]] = [[] for _ in range(n)]
        self.margin: list[list[float]] = [[] for _ in range(n)]

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        top = p.topk(2, dim=-1).values
        for r, h, m in zip(active, entropy(p).tolist(), (top[:, 0] - top[:, 1]).tolist()):
            self.entropy[r].append(h)
            self.margin[r].append(m)

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        return still

    def receive(self) -> None:
        pass


def most_uncertain(entropies: list[float], margins: list[float], settings: PositionSettings) -> list[int]:
    """The M most uncertain steps (highest entropy, or lowest margin; earlier first on ties), in step order."""
    key = (lambda s: (-entropies[s], s)) if settings.signal == "entropy" else (lambda s: (margins[s], s))
    return sorted(sorted(range(len(entropies)), key=key)[: settings.top_m])


def label_positions(decoder: Decoder, prompts: list[Prompt], settings: PositionSettings) -> list[PositionLabels]:
    """Position labels of a batch of prompts (`decoder`: the two engines and the stop rule)."""
    student = decoder.student
    greedy = [Generation(tokens_processed=student.prompt_cost(p)) for p in prompts]
    trace, session = _Trace(len(prompts)), uuid.uuid4().hex
    try:
        p = student.prefill(session, prompts).probs
        decode_steps(student, session, p, greedy, list(range(len(prompts))), decoder.stop, decoder.tokenizer, hook=trace)
    finally:
        student.close(session)
    labels = []
    for g, h, m in zip(greedy, trace.entropy, trace.margin):
        g.text = decoder.finish_text(g)
        labels.append(PositionLabels(g, h, m, most_uncertain(h, m, settings), student_tokens_processed=g.tokens_processed))
    pairs = [(r, s) for r, lab in enumerate(labels) for s in lab.steps]
    if pairs:
        _label_steps(decoder, prompts, labels, pairs, settings)
    return labels


def _label_steps(decoder: Decoder, prompts: list[Prompt], labels: list[PositionLabels], pairs: list[tuple[int, int]],
                 settings: PositionSettings) -> None:
    """Both models prefilled on every labelled prefix, the mixed token per α, and each distinct
    token that is not the student's own continued greedily."""
    student, teacher = decoder.student, decoder.teacher
    prefixes = [(prompts[r][0], prompts[r][1] + labels[r].greedy.token_ids[:s]) for r, s in pairs]
    session = uuid.uuid4().hex
    try:
        ask_for(teacher, session, decoder.teacher_top_k)
        pending = teacher.prefill_async(session, prefixes)
        p_s = student.prefill(session, prefixes).probs
        p_t = TeacherNext(teacher, session, pending.result())
        grid = [mixed_argmax(p_s, p_t, torch.full((len(pairs),), a, device=p_s.device)).tolist() for a in settings.alpha_grid]
        teacher.close(session)
        forks, tokens, rows = [], [], []  # the continuation rows: prefix index, forced token, Generation
        for i, (r, s) in enumerate(pairs):
            lab, own = labels[r], labels[r].greedy.token_ids[s]
            lab.student_tokens_processed += student.prompt_cost(prefixes[i])
            lab.teacher_tokens_processed += teacher.prompt_cost(prefixes[i])
            picked = [grid[a][i] for a in range(len(settings.alpha_grid))]
            made = {own: lab.greedy}
            for token in dict.fromkeys(picked):
                if token not in made:
                    made[token] = Generation(token_ids=lab.greedy.token_ids[:s])
                    forks.append(i)
                    tokens.append(token)
                    rows.append(made[token])
            lab.tokens.append(picked)
            lab.answers.append([made[token] for token in picked])
        if forks:  # each row's first step takes its forced token (a one-hot distribution), then greedy
            student.fork(session, forks)
            forced = torch.zeros(len(forks), p_s.shape[-1], device=p_s.device)
            forced[torch.arange(len(forks)), torch.tensor(tokens)] = 1.0
            decoder.continue_greedy(session, forced, rows)
    finally:
        student.close(session)
        teacher.close(session)
    for i, row in zip(forks, rows):
        row.text = decoder.finish_text(row)
        labels[pairs[i][0]].student_tokens_processed += row.tokens_processed
