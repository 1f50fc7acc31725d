"""The one orchestration: every strategy of a run on one batch of prompts, with the work they
have in common done once. `Decoder.generate` runs a lone strategy through it too.

Decoding a batch strategy by strategy repeats most of it: each strategy prefills the student
(and the teacher) on the same prompts, and every row that ends with α = 0 (outside an entropy
gate's band, predicted 0) decodes again exactly the student-greedy answer. Here:
- the student is prefilled once, with the hidden states every strategy reads;
- the teacher is prefilled once, for every row any strategy consults;
- the student-greedy decode runs once, over the rows some strategy takes it for, and each
  strategy's α = 0 rows are copies of it, as are rows whose mixed prefix is the student's
  own (greedy decoding is a function of the prefix);
- each strategy decodes its consulting rows from clones of the two prefilled sessions; the
  last one to need them decodes in them (no clone).
Strategies with a decode of their own (the teacher alone, CoT-decoding's branches) run as
they do alone.

Each row, cost counters included, is what the strategy gives decoded alone in one batch
(`tests/reference_decoding.py`): the counters say what the strategy costs, not how the work
was shared. (A student engine without sessions adds what its continuations recompute.)
"""
from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.decoding.teacher_phase import TeacherPhase
from pipeline.engine.interface import FeatureRequest, Prompt, Sampler
from pipeline.engine.steps import decode_steps

if TYPE_CHECKING:
    from pipeline.decoding.decoder import Decoder


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


def decode_strategies(decoder: Decoder, strategies: Sequence[Strategy], prompts: list[Prompt],
                      sampler: Sampler | None = None) -> tuple[list[StrategyRows], float]:
    """Rows of each strategy (in order) on `prompts`, and the seconds of shared work. A
    `sampler` draws the student's own decode (strategies that never consult the teacher)."""
    start = time.perf_counter()
    mixing = [i for i, s in enumerate(strategies) if s.generator == "student" and s.plan.steps != 0]
    session = uuid.uuid4().hex
    out: list[StrategyRows | None] = [None] * len(strategies)
    try:
        shared = _prefill(decoder, strategies, mixing, prompts, session) if any(s.generator == "student" for s in strategies) else None
        alphas = {i: _alphas(strategies[i], shared) for i in mixing}
        asking = {i: _asking(strategies[i], alphas[i]) for i in mixing}
        consulting = [i for i in mixing if bool(asking[i].any())]
        if sampler is not None and consulting:
            raise ValueError("a sampler draws the student's own decode: rows that consult the teacher decode greedily")
        if consulting and shared.teacher is None:
            _prefill_teacher_late(decoder, shared, prompts, asking)
        rows = _greedy_rows(strategies, asking, len(prompts))
        greedy = _greedy(decoder, shared, prompts, rows, sampler, in_place=not consulting) if rows else None
        shared_s = time.perf_counter() - start
        for i, strategy in enumerate(strategies):
            began = time.perf_counter()
            if strategy.generator == "teacher":
                gens = decoder.teacher_alone(prompts)
            elif strategy.generator == "branches":
                gens = decoder.branched(strategy, prompts)
            elif i in mixing:
                gens = _mixed(decoder, strategy, shared, prompts, alphas[i], asking[i], greedy,
                              in_place=bool(consulting) and i == consulting[-1])
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
    plans = [strategies[i].plan for i in mixing]
    early = any(plan.prefills_every_row for plan in plans)
    # full rows at the prefill when every consulting strategy reads them (SWITCH, a two-model
    # predictor), else the top-k; float32 where α is chosen from them, else their own precision
    full = bool(plans) and all(plan.full_rows or plan.reads_first for plan in plans)
    dtypes = {None if plan.reads_first else plan.full_rows_dtype for plan in plans}
    dtype = dtypes.pop() if full and len(dtypes) == 1 else None
    pending = None
    if early:
        ask_for(decoder.teacher, session, None if full else decoder.teacher_top_k, dtype)
        pending = decoder.teacher.prefill_async(session, prompts)
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


def _asking(strategy: Strategy, alphas: torch.Tensor) -> torch.Tensor:
    """The rows that consult the teacher: those with α ≠ 0, or every row of an on-demand
    strategy (which picks its steps while decoding)."""
    return torch.ones_like(alphas, dtype=torch.bool) if strategy.plan.on_demand else alphas != 0


def _prefill_teacher_late(decoder: Decoder, shared: _Prefilled, prompts: list[Prompt], asking: dict) -> None:
    """The teacher's prefill of the rows some strategy consults, once their α are known."""
    rows = sorted({r for a in asking.values() for r in a.nonzero().flatten().tolist()})
    if rows:
        ask_for(decoder.teacher, shared.session, decoder.teacher_top_k)
        out = decoder.teacher.prefill(shared.session, [prompts[r] for r in rows])
        shared.teacher, shared.teacher_rows = TeacherNext(decoder.teacher, shared.session, out), rows


def _greedy_rows(strategies: Sequence[Strategy], asking: dict[int, torch.Tensor], n: int) -> list[int]:
    """The rows the student-greedy decode is taken for: every row for a strategy that never
    consults the teacher, else the rows some strategy does not consult."""
    if any(s.generator == "student" and s.plan.steps == 0 for s in strategies):
        return list(range(n))
    return sorted({r for a in asking.values() for r in (~a).nonzero().flatten().tolist()})


def _fresh(decoder: Decoder, shared: _Prefilled, prompt: Prompt, r: int) -> Generation:
    return Generation(tokens_processed=decoder.student.prompt_cost(prompt), student_first_entropy=shared.entropies[r])


def _greedy(decoder: Decoder, shared: _Prefilled, prompts: list[Prompt], rows: list[int], sampler: Sampler | None,
            in_place: bool) -> list[Generation | None]:
    """The student alone on `rows` (None for the others), in the shared prefill's session when
    nothing decodes from it afterwards, else from a clone of it."""
    gens = [_fresh(decoder, shared, prompts[r], r) for r in rows]
    session = shared.session if in_place else uuid.uuid4().hex
    if in_place:
        if len(rows) < len(prompts):
            decoder.student.fork(session, rows)
    else:
        decoder.student.clone(shared.session, session, rows)
    try:
        decoder.continue_greedy(session, shared.p[rows], gens, sampler, [prompts[r] for r in rows])
    finally:
        if not in_place:
            decoder.student.close(session)
    by_row: list[Generation | None] = [None] * len(prompts)
    for r, g in zip(rows, gens):
        g.text = decoder.finish_text(g)
        by_row[r] = g
    return by_row


def _mixed(decoder: Decoder, strategy: Strategy, shared: _Prefilled, prompts: list[Prompt], alphas: torch.Tensor,
           asking: torch.Tensor, greedy: list[Generation | None] | None, in_place: bool) -> list[Generation]:
    """A strategy that consults the teacher: its α = 0 rows copied from the greedy decode, the
    others decoded mixed prefix first, in the prefilled sessions (`in_place`: the last
    strategy to need them) or clones of them."""
    rows = asking.nonzero().flatten().tolist()
    consulted = set(rows)
    gens = [None if r in consulted else copy.deepcopy(greedy[r]) for r in range(len(prompts))]
    if rows:
        sub = [_fresh(decoder, shared, prompts[r], r) for r in rows]
        position = {r: i for i, r in enumerate(shared.teacher_rows)}
        at = [position[r] for r in rows]
        session = shared.session if in_place else uuid.uuid4().hex
        phase = TeacherPhase(strategy, decoder.teacher, session, list(range(len(rows))), sub, decoder.teacher_top_k,
                             reference=None if greedy is None else [greedy[r] for r in rows])
        _take_rows(decoder.student, shared.session, session, rows, len(prompts))
        try:
            _take_rows(decoder.teacher, shared.session, session, at, len(shared.teacher_rows))
            phase.next = shared.teacher.select(at, session)
            phase.choose(alphas[rows])
            left = decode_steps(decoder.student, session, shared.p[rows], sub, list(range(len(rows))), decoder.stop,
                                decoder.tokenizer, None, phase, hand_off=not decoder.keeps_sessions)
            if left:  # past the mixed prefix: a plain continuation
                decoder.continue_plain([prompts[r] for r in rows], sub, left)
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
        gens[r].teacher_calls += 1
    return gens


def _take_rows(engine, shared: str, session: str, rows: list[int], n: int) -> None:
    """`session` holds `rows` of the shared session: the shared one itself, forked in place
    (when `session` is it), or a clone."""
    if session != shared:
        engine.clone(shared, session, rows)
    elif len(rows) < n:
        engine.fork(session, rows)
