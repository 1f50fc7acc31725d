"""The one orchestration: every strategy of a run on one batch of prompts, decoded together,
with the work they have in common done once. `generate` runs a lone strategy through it too.

Decoding a batch strategy by strategy repeats most of it: each strategy prefills the student
(and the teacher) on the same prompts, every row that ends with α = 0 decodes again exactly
the student-greedy answer, and each strategy steps both models on its own. Here:
- the student is prefilled once, with the hidden states every strategy reads;
- the teacher is prefilled once, for every row any strategy consults, sent before the
  student's prefill where the rows are known up front and read only where first needed, so
  that it runs while the student prefills and decodes;
- one student batch holds the student-greedy rows (those some strategy takes it for) and
  every strategy's consulting rows, stepped in one forward per step; each strategy's α = 0
  rows are copies of the greedy rows, and a row whose mixed prefix turned out to be the
  student's own follows its greedy row (greedy decoding is a function of the prefix);
- the teacher's part is two hooks over the rows of all strategies: the lockstep one feeds
  every lockstep row's token in one call per step, the on-demand one catches up every
  consulting row in one call per step (`lockstep.py`, `on_demand.py`).
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
import torch

from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.lockstep import Lockstep
from pipeline.decoding.on_demand import OnDemand
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.decoding.teacher_rows import TeacherRows
from pipeline.engine.interface import FeatureRequest, Prompt, Sampler
from pipeline.engine.steps import decode_steps


@dataclass
class StrategyRows:
    gens: list[Generation]
    own_s: float  # seconds spent on this strategy alone (the batch decoded together is apart)


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


def generate(decoder: Decoder, strategy: Strategy, prompts: list[Prompt], sampler: Sampler | None = None) -> list[Generation]:
    """One strategy's rows on a batch; greedy unless a `sampler` picks the student's tokens
    (for strategies that decode the student alone)."""
    [done], _ = decode_strategies(decoder, [strategy], prompts, sampler)
    return done.gens


def decode_strategies(decoder: Decoder, strategies: Sequence[Strategy], prompts: list[Prompt],
                      sampler: Sampler | None = None) -> tuple[list[StrategyRows], float]:
    """Rows of each strategy (in order) on `prompts`, and the seconds of the work decoded
    together. A `sampler` draws the student's own decode (strategies that never consult the teacher)."""
    start = time.perf_counter()
    out: list[StrategyRows | None] = [None] * len(strategies)
    if not all(s.alone for s in strategies):
        for i, gens in _decode_together(decoder, strategies, prompts, sampler).items():
            out[i] = StrategyRows(gens, 0.0)
    together_s = time.perf_counter() - start
    for i, strategy in enumerate(strategies):
        if strategy.alone:
            began = time.perf_counter()
            gens = strategy.decode_alone(decoder, prompts)
            out[i] = StrategyRows(gens, time.perf_counter() - began)
    return out, together_s


def _decode_together(decoder: Decoder, strategies: Sequence[Strategy], prompts: list[Prompt],
                     sampler: Sampler | None) -> dict[int, list[Generation]]:
    """The rows of every strategy the student's loop decodes, by strategy index."""
    mixing = [i for i, s in enumerate(strategies) if not s.alone and s.plan.steps != 0]
    session = uuid.uuid4().hex
    opened: list[str] = []  # teacher sessions to close
    try:
        shared = _prefill(decoder, strategies, mixing, prompts, session)
        if shared.teacher is not None:
            opened.append(session)
        alphas = {i: _alphas(strategies[i], shared) for i in mixing}
        asking = {i: _asking(strategies[i], alphas[i]) for i in mixing}
        consulting = [i for i in mixing if bool(asking[i].any())]
        if sampler is not None and consulting:
            raise ValueError("a sampler draws the student's own decode: rows that consult the teacher decode greedily")
        if consulting and shared.teacher is None:
            _prefill_teacher_late(decoder, shared, prompts, asking)
            opened.append(session)
        greedy = _greedy_rows(strategies, asking, len(prompts))
        batch = [(None, r) for r in greedy] + [(i, r) for i in consulting for r in asking[i].nonzero().flatten().tolist()]
        gens = [_fresh(decoder, shared, prompts[r], r) for _, r in batch]
        row_alphas = torch.tensor([0.0 if i is None else float(alphas[i][r]) for i, r in batch])
        groups = _teacher_groups(decoder, strategies, consulting, batch, shared, opened)
        if [r for _, r in batch] != list(range(len(prompts))):
            decoder.student.fork(session, [r for _, r in batch])  # a prompt's rows beyond its first are copies
        hooks = _TeacherHooks(decoder, groups, gens, row_alphas, _references(batch, greedy))
        p, batch_prompts = shared.p[[r for _, r in batch]], [prompts[r] for _, r in batch]
        if hooks.open:
            decode_steps(decoder.student, session, p, gens, list(range(len(batch))), decoder.stop, decoder.tokenizer, None, hooks)
            hooks.finish(batch_prompts)
        else:
            decoder.continue_greedy(session, p, gens, sampler, batch_prompts)
    finally:
        decoder.student.close(session)
        for opened_session in opened:
            decoder.teacher.close(opened_session)
    for g in gens:
        g.text = decoder.finish_text(g)
    return _by_strategy(decoder, strategies, prompts, batch, gens)


def _prefill(decoder: Decoder, strategies, mixing: list[int], prompts: list[Prompt], session: str) -> _Prefilled:
    """The student's prefill, with the teacher's of every row sent first (so both run at once,
    its answer read where first needed) when some strategy consults every row or reads the
    teacher's first distribution."""
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
        shared.teacher, shared.teacher_rows = TeacherNext(decoder.teacher, session, pending), list(range(len(prompts)))
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
    ask_for(decoder.teacher, shared.session, decoder.teacher_top_k)
    pending = decoder.teacher.prefill_async(shared.session, [prompts[r] for r in rows])
    shared.teacher, shared.teacher_rows = TeacherNext(decoder.teacher, shared.session, pending), rows


def _greedy_rows(strategies: Sequence[Strategy], asking: dict[int, torch.Tensor], n: int) -> list[int]:
    """The prompts the student-greedy decode is taken for: every one for a strategy that never
    consults the teacher, else those some strategy does not consult."""
    if any(not s.alone and s.plan.steps == 0 for s in strategies):
        return list(range(n))
    return sorted({r for a in asking.values() for r in (~a).nonzero().flatten().tolist()})


def _fresh(decoder: Decoder, shared: _Prefilled, prompt: Prompt, r: int) -> Generation:
    return Generation(tokens_processed=decoder.student.prompt_cost(prompt), student_first_entropy=shared.entropies[r])


def _teacher_groups(decoder: Decoder, strategies, consulting: list[int], batch: list[tuple[int | None, int]],
                    shared: _Prefilled, opened: list[str]) -> list[TeacherRows]:
    """Each consulting strategy's rows in a teacher session of their own, taken from the
    shared prefill (clones; the last strategy takes the prefill's session itself), each with
    the transport its plan asks for."""
    position = {r: i for i, r in enumerate(shared.teacher_rows or [])}
    groups = []
    for n, i in enumerate(consulting):
        rows = [b for b, (j, _) in enumerate(batch) if j == i]
        at = [position[batch[b][1]] for b in rows]
        last = n == len(consulting) - 1
        session = shared.session if last else uuid.uuid4().hex
        if not last:
            decoder.teacher.clone(shared.session, session, at)
            opened.append(session)
        elif at != list(range(len(position))):
            decoder.teacher.fork(session, at)
        plan = strategies[i].plan
        ask_for(decoder.teacher, session, None if plan.full_rows else decoder.teacher_top_k, plan.full_rows_dtype)
        groups.append(TeacherRows(strategies[i], session, rows, shared.teacher.select(at, session)))
    return groups


def _references(batch: list[tuple[int | None, int]], greedy: list[int]) -> dict[int, int]:
    """Each strategy row's student-greedy row of the same prompt, where the batch has one."""
    own = {r: b for b, (i, r) in enumerate(batch) if i is None}
    return {b: own[r] for b, (i, r) in enumerate(batch) if i is not None and r in own}


class _TeacherHooks:
    """The step hook of the batch: the lockstep and the on-demand teacher hooks over their
    strategies' rows, and the rows that leave the teacher with the student's own prefix, which
    then follow their greedy row instead of decoding it again. A student engine without
    sessions gets every other row that needs no teacher for a plain continuation
    (`Generator.generate` from its tokens so far) instead of stepping it."""

    def __init__(self, decoder: Decoder, groups: list[TeacherRows], gens: list[Generation], alphas: torch.Tensor,
                 references: dict[int, int]):
        for g in groups:
            if not g.strategy.plan.on_demand:
                for b in g.rows:
                    gens[b].alpha = float(alphas[b])
        self.lockstep = Lockstep(decoder.teacher, [g for g in groups if not g.strategy.plan.on_demand], gens, alphas)
        self.on_demand = OnDemand(decoder.teacher, [g for g in groups if g.strategy.plan.on_demand], gens, alphas)
        self.decoder, self.gens, self.references = decoder, gens, references
        self.follows: dict[int, int] = {}
        self.handed: list[int] = []  # rows for a plain continuation (a student engine without sessions)

    @property
    def open(self) -> bool:
        return self.lockstep.open or self.on_demand.open

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        self.lockstep.apply(t, p, active, tokens)
        self.on_demand.apply(t, p, active, tokens)

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        self.on_demand.send(t, still, token_of)
        self.lockstep.send(t, still, token_of)
        return self._settle(still)

    def receive(self) -> None:
        self.lockstep.receive()

    def _settle(self, still: list[int]) -> list[int]:
        """Rows done with the teacher whose tokens so far are their greedy row's follow it; the
        rows the student still steps."""
        teaching = self.lockstep.with_teacher() | self.on_demand.with_teacher()
        left = []
        for b in still:
            ref = self.references.get(b)
            if b in teaching:
                left.append(b)
            elif ref is not None and self.gens[ref].token_ids == self.gens[b].token_ids:
                self.follows[b] = ref
            elif not self.decoder.keeps_sessions:
                self.handed.append(b)
            else:
                left.append(b)
        return left

    def finish(self, prompts: list[Prompt]) -> None:
        """Rows handed off continued, then the followers take their greedy row's answer (and
        its student cost); the teacher is left."""
        self.lockstep.close()
        self.on_demand.close()
        if self.handed:
            self.decoder.continue_plain(prompts, self.gens, self.handed)
        for b, ref in self.follows.items():
            gen, done = self.gens[b], self.gens[ref]
            gen.token_ids, gen.finish_reason, gen.tokens_processed = list(done.token_ids), done.finish_reason, done.tokens_processed


def _by_strategy(decoder: Decoder, strategies, prompts: list[Prompt], batch: list[tuple[int | None, int]],
                 gens: list[Generation]) -> dict[int, list[Generation]]:
    """Each student-loop strategy's rows: its consulting rows, copies of the greedy row where it
    did not consult, and the teacher prompts it pays for alone (every row's when it prefills them all)."""
    own = {key: gen for key, gen in zip(batch, gens)}
    out = {}
    for i, strategy in enumerate(strategies):
        if strategy.alone:
            continue
        rows = [own[(i, r)] if (i, r) in own else copy.deepcopy(own[(None, r)]) for r in range(len(prompts))]
        if strategy.plan.steps != 0:
            billed = range(len(prompts)) if strategy.plan.prefills_every_row else [r for r in range(len(prompts)) if (i, r) in own]
            for r in billed:
                rows[r].read_by_teacher(decoder.teacher.prompt_cost(prompts[r]))
        out[i] = rows
    return out
