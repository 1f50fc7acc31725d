"""The reference every shared orchestration is checked against: one strategy on one batch,
decoded the plain way, in one student batch with the teacher phase hooked in (no shared
prefill, no copies of the student-greedy decode, no clones). Production decodes through
`pipeline.decoding.shared_batch`; this is only for equivalence tests."""
from __future__ import annotations

import uuid

from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.generation import Generation
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_phase import TeacherPhase
from pipeline.engine.interface import Prompt, Sampler
from pipeline.engine.steps import decode_steps


def reference_generate(decoder: Decoder, strategy: Strategy, prompts: list[Prompt], sampler: Sampler | None = None) -> list[Generation]:
    if strategy.generator != "student":
        return decoder.generate(strategy, prompts)  # a decode of its own either way
    session = uuid.uuid4().hex
    gens = [Generation(tokens_processed=decoder.student.prompt_cost(p)) for p in prompts]
    phase = None
    try:
        early = _early_phase(decoder, session, strategy, prompts, gens)
        first = decoder.student.prefill(session, prompts, strategy.feature_request)
        p = first.probs
        for g, h in zip(gens, entropy(p).tolist()):
            g.student_first_entropy = h
        phase = _teacher_phase(decoder, session, strategy, prompts, p, first.features, gens, early)
        decode_steps(decoder.student, session, p, gens, list(range(len(prompts))), decoder.stop, decoder.tokenizer, sampler, phase)
    finally:
        decoder.student.close(session)
        if strategy.plan.steps != 0 and (phase is None or phase.open):
            decoder.teacher.close(session)
    for g in gens:
        g.text = decoder.finish_text(g)
    return gens


def _early_phase(decoder, session, strategy, prompts, gens) -> TeacherPhase | None:
    if not strategy.plan.prefills_every_row:
        return None
    phase = TeacherPhase(strategy, decoder.teacher, session, list(range(len(prompts))), gens, decoder.teacher_top_k)
    phase.send_prefill(prompts, full=strategy.plan.reads_first)
    return phase


def _teacher_phase(decoder, session, strategy, prompts, p_first, features, gens, early) -> TeacherPhase | None:
    if strategy.plan.steps == 0:
        return None
    if early is not None:
        phase = early
        phase.receive()
        p_teacher = phase.next.full().to(p_first.device) if strategy.plan.reads_first else None
        alphas = strategy.row_alphas(p_first, features, p_teacher).cpu()
    else:
        alphas = strategy.row_alphas(p_first, features).cpu()
        rows = [i for i, a in enumerate(alphas.tolist()) if a != 0.0]
        if not rows:
            return None
        phase = TeacherPhase(strategy, decoder.teacher, session, rows, gens, decoder.teacher_top_k)
        phase.send_prefill(prompts)
        phase.receive()
    phase.choose(alphas)
    return phase if phase.open else None


def comparable(gen: Generation) -> dict:
    """A row as tests compare it: every field exact (tokens, text, costs, which tokens the
    teacher decided), the student's uncertainties rounded to 5 significant digits (they are
    float sums whose order the batch's make-up may change, as with any attention kernel)."""
    row = dict(vars(gen))
    row["consultations"] = [(c.step, float(f"{c.uncertainty:.5g}"), c.alpha, c.changed) for c in gen.consultations]
    for name in ("student_first_entropy", "cot_confidence"):
        if row[name] is not None:
            row[name] = float(f"{row[name]:.5g}")
    return row
