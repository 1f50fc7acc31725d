"""The reference every shared orchestration is checked against: one strategy on one batch,
decoded the plain way, in one student batch with its teacher hook in (no shared prefill, no
other strategy's rows, no copies of the student-greedy decode, no clones). Production decodes
through `pipeline.decoding.shared_batch`; this is only for equivalence tests."""
from __future__ import annotations

import uuid

import pytest

from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.lockstep import Lockstep
from pipeline.decoding.on_demand import OnDemand
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext, ask_for
from pipeline.decoding.teacher_rows import TeacherRows
from pipeline.engine.interface import Prompt, Sampler
from pipeline.engine.steps import decode_steps


def reference_generate(decoder: Decoder, strategy: Strategy, prompts: list[Prompt], sampler: Sampler | None = None) -> list[Generation]:
    if strategy.alone:
        return strategy.decode_alone(decoder, prompts)
    session, plan, teacher = uuid.uuid4().hex, strategy.plan, decoder.teacher
    gens = [Generation(tokens_processed=decoder.student.prompt_cost(p)) for p in prompts]
    hook = first_teacher = None
    try:
        if plan.prefills_every_row:
            full = plan.full_rows or plan.reads_first
            ask_for(teacher, session, None if full else decoder.teacher_top_k, None if plan.reads_first else plan.full_rows_dtype)
            first_teacher = TeacherNext(teacher, session, teacher.prefill_async(session, prompts))
        first = decoder.student.prefill(session, prompts, strategy.feature_request)
        p = first.probs
        for g, h in zip(gens, entropy(p).tolist()):
            g.student_first_entropy = h
        if plan.steps != 0:
            hook = _teacher_hook(decoder, session, strategy, prompts, p, first.features, gens, first_teacher)
        decode_steps(decoder.student, session, p, gens, list(range(len(prompts))), decoder.stop, decoder.tokenizer, sampler, hook)
    finally:
        decoder.student.close(session)
        if plan.steps != 0:
            teacher.close(session)
    for g in gens:
        g.text = decoder.finish_text(g)
    return gens


def _teacher_hook(decoder, session, strategy, prompts, p_first, features, gens, first_teacher):
    plan, teacher = strategy.plan, decoder.teacher
    p_teacher = first_teacher.full().to(p_first.device) if plan.reads_first else None
    alphas = strategy.row_alphas(p_first, features, p_teacher).cpu()
    rows = list(range(len(prompts))) if plan.on_demand else [r for r, a in enumerate(alphas.tolist()) if a != 0.0]
    for r in (range(len(prompts)) if plan.prefills_every_row else rows):
        gens[r].read_by_teacher(teacher.prompt_cost(prompts[r]))
    if not rows:
        return None
    if first_teacher is None:
        ask_for(teacher, session, decoder.teacher_top_k)
        first_teacher = TeacherNext(teacher, session, teacher.prefill(session, [prompts[r] for r in rows]))
    elif len(rows) < len(prompts):
        teacher.fork(session, rows)
        first_teacher = first_teacher.select(rows)
    ask_for(teacher, session, None if plan.full_rows else decoder.teacher_top_k, plan.full_rows_dtype)
    if not plan.on_demand:
        for r in rows:
            gens[r].alpha = float(alphas[r])
    hook = OnDemand if plan.on_demand else Lockstep
    return hook(teacher, [TeacherRows(strategy, session, rows, first_teacher)], gens, alphas)


def _exact(gen: Generation) -> dict:
    row = dict(vars(gen))
    row["consultations"] = [(c.step, c.alpha, c.changed) for c in gen.consultations]
    for name in ("student_first_entropy", "cot_confidence"):
        row.pop(name)
    return row


def _floats(gen: Generation) -> list[float]:
    values = [c.uncertainty for c in gen.consultations] + [gen.student_first_entropy, gen.cot_confidence]
    return [v for v in values if v is not None]


def assert_same_rows(got: list[Generation], expected: list[Generation], label: object = "") -> None:
    """Rows as tests compare them: every field exact (tokens, text, costs, which tokens the
    teacher decided, each consultation's step, α and change), the student's uncertainties to
    1e-4 (float sums whose order the batch's make-up may change, as with any attention kernel)."""
    assert len(got) == len(expected), label
    for i, (a, b) in enumerate(zip(got, expected)):
        diff = {k: (v, _exact(b)[k]) for k, v in _exact(a).items() if _exact(b)[k] != v}
        assert not diff, (label, i, diff)
        assert _floats(a) == pytest.approx(_floats(b), rel=1e-4, abs=1e-6), (label, i)
