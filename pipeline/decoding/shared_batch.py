"""Every strategy of a run on one batch of prompts, with the work they have in common done once.

Decoding a batch strategy by strategy repeats most of it: each strategy prefills the student
(and the teacher) on the same prompts, and every row that ends with α = 0 (outside an entropy
gate's band, predicted 0) decodes again exactly the student-greedy answer. Here:
- the student is prefilled once, with the hidden states every strategy reads;
- the teacher is prefilled once, for every row any strategy consults;
- the student-greedy decode runs once (when some strategy can use it), and each strategy's
  α = 0 rows are copies of it, as are rows whose mixed prefix is the student's own (greedy
  decoding is a function of the prefix);
- each strategy decodes its consulting rows from clones of the two prefilled sessions.
Strategies with a decode of their own (the teacher alone, CoT-decoding's branches) run as
they do alone.

Each row, cost counters included, is what `Decoder.generate(strategy, prompts)` gives for
that strategy alone: the counters say what the strategy costs, not how the work was shared.
"""
from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.decoding.decoder import Decoder, Generation, TeacherPhase
from pipeline.decoding.distributions import entropy
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext
from pipeline.engine.interface import FeatureRequest, Prompt
from pipeline.engine.steps import decode_steps


@dataclass
class StrategyRows:
    gens: list[Generation]
    own_s: float  # seconds spent on this strategy alone (the shared work is apart)


@dataclass
class _Prefilled:
    """The batch after the shared prefills: sessions under `session` on both engines."""

    session: str
    p: torch.Tensor  # the student's first-token probabilities [B, V]
    features: torch.Tensor | None
    request: FeatureRequest | None
    entropies: list[float]
    teacher: TeacherNext | None = None  # the teacher's first distribution, rows as in `teacher_rows`
    teacher_rows: list[int] | None = None


def decode_strategies(decoder: Decoder, strategies: Sequence[Strategy], prompts: list[Prompt]) -> tuple[list[StrategyRows], float]:
    """Rows of each strategy (in order) on `prompts`, and the seconds of shared work."""
    start = time.perf_counter()
    mixing = [i for i, s in enumerate(strategies) if s.generator == "student" and s.plan.steps != 0]
    session = uuid.uuid4().hex
    out: list[StrategyRows | None] = [None] * len(strategies)
    try:
        shared = _prefill(decoder, strategies, mixing, prompts, session)
        alphas = {i: _alphas(strategies[i], shared) for i in mixing}
        if shared.teacher is None:
            _prefill_teacher_late(decoder, shared, prompts, alphas)
        wants_greedy = any(s.generator == "student" and s.plan.steps == 0 for s in strategies) or any(
            bool((a == 0).any()) for a in alphas.values())
        greedy = _greedy(decoder, shared, prompts) if wants_greedy else None
        shared_s = time.perf_counter() - start
        for i, strategy in enumerate(strategies):
            began = time.perf_counter()
            if strategy.generator != "student":  # the teacher alone, CoT-decoding's branches: a decode of their own
                gens = decoder.generate(strategy, prompts)
            elif i in mixing:
                gens = _mixed(decoder, strategy, shared, prompts, alphas[i], greedy)
            else:
                gens = copy.deepcopy(greedy)
            out[i] = StrategyRows(gens, time.perf_counter() - began)
    finally:
        decoder.student.close(session)
        if mixing:
            decoder.teacher.close(session)
    return out, shared_s


def _prefill(decoder: Decoder, strategies, mixing: list[int], prompts: list[Prompt], session: str) -> _Prefilled:
    """The student's prefill, with the teacher's of every row sent first (so both run at once)
    when some strategy consults every row or reads the teacher's first distribution."""
    early = any(strategies[i].plan.prefills_every_row for i in mixing)
    pending = decoder.teacher.prefill_async(session, prompts, top_k=decoder.teacher_top_k) if early else None
    request = FeatureRequest.merged([s.feature_request for s in strategies])
    first = decoder.student.prefill(session, prompts, request)
    p = first.probs
    shared = _Prefilled(session, p, first.features, request, entropy(p).tolist())
    if pending is not None:
        shared.teacher, shared.teacher_rows = TeacherNext(decoder.teacher, session, pending.result()), list(range(len(prompts)))
    return shared


def _alphas(strategy: Strategy, shared: _Prefilled) -> torch.Tensor:
    request = strategy.feature_request
    features = None if request is None else request.take(shared.features, shared.request)
    p_teacher = shared.teacher.full().to(shared.p.device) if strategy.plan.reads_first else None
    return strategy.row_alphas(shared.p, features, p_teacher).cpu()


def _prefill_teacher_late(decoder: Decoder, shared: _Prefilled, prompts: list[Prompt], alphas: dict) -> None:
    """The teacher's prefill of the rows some strategy consults, once their α are known."""
    rows = sorted({r for a in alphas.values() for r in (a != 0).nonzero().flatten().tolist()})
    if rows:
        out = decoder.teacher.prefill(shared.session, [prompts[r] for r in rows], top_k=decoder.teacher_top_k)
        shared.teacher, shared.teacher_rows = TeacherNext(decoder.teacher, shared.session, out), rows


def _fresh(decoder: Decoder, shared: _Prefilled, prompt: Prompt, r: int) -> Generation:
    return Generation(tokens_processed=decoder.student.prompt_cost(prompt), student_first_entropy=shared.entropies[r])


def _greedy(decoder: Decoder, shared: _Prefilled, prompts: list[Prompt]) -> list[Generation]:
    """The student alone on every row, from a clone of the shared prefill."""
    gens = [_fresh(decoder, shared, p, r) for r, p in enumerate(prompts)]
    session = uuid.uuid4().hex
    decoder.student.clone(shared.session, session, list(range(len(prompts))))
    try:
        decoder.continue_greedy(session, shared.p, gens)
    finally:
        decoder.student.close(session)
    for g in gens:
        g.text = decoder.finish_text(g)
    return gens


def _mixed(decoder: Decoder, strategy: Strategy, shared: _Prefilled, prompts: list[Prompt], alphas: torch.Tensor,
           greedy: list[Generation] | None) -> list[Generation]:
    """A strategy that consults the teacher: its α = 0 rows copied from the greedy decode, the
    others decoded from clones of both prefilled sessions, mixed prefix first."""
    rows = (alphas != 0).nonzero().flatten().tolist()
    consulted = set(rows)
    gens = [None if r in consulted else copy.deepcopy(greedy[r]) for r in range(len(prompts))]
    if rows:
        sub = [_fresh(decoder, shared, prompts[r], r) for r in rows]
        session = uuid.uuid4().hex
        position = {r: i for i, r in enumerate(shared.teacher_rows)}
        at = [position[r] for r in rows]
        phase = TeacherPhase(strategy, decoder.teacher, session, list(range(len(rows))), sub, decoder.teacher_top_k,
                             reference=None if greedy is None else [greedy[r] for r in rows])
        decoder.student.clone(shared.session, session, rows)
        try:
            decoder.teacher.clone(shared.session, session, at)
            phase.next = shared.teacher.select(at, session)
            phase.choose(alphas[rows])
            decode_steps(decoder.student, session, shared.p[rows], sub, list(range(len(rows))), decoder.stop,
                         decoder.tokenizer, None, phase)
        finally:
            decoder.student.close(session)
            if phase.open:
                phase.close()
        for r, g in zip(rows, sub):
            g.text = decoder.finish_text(g)
            gens[r] = g
    # the teacher prompts the strategy pays for alone: every row's when it prefills them all
    billed = range(len(prompts)) if strategy.plan.prefills_every_row else rows
    for r in billed:
        gens[r].teacher_tokens_processed += decoder.teacher.prompt_cost(prompts[r])
    return gens
