"""The one batched greedy decoding loop every strategy runs in.

Read it like gpt-fast's generate.py: `prefill` both models, then `decode_step`
until every row stopped. The teacher is asked once per step per batch, only for
the rows and steps the strategy needs; finished rows leave the batch.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import torch

from pipeline.distributions import entropy, probs
from pipeline.runner import Prompt
from pipeline.strategies import Strategy


@dataclass
class Generation:
    """What decoding one example produced, with its cost counters."""

    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"  # eos | stop | length
    alpha: float = 0.0  # mixing weight this row used (0: teacher never asked)
    teacher_tokens: int = 0  # generated tokens decided with the teacher's distribution
    teacher_changed_tokens: int = 0  # ...of which differ from the student's own argmax
    student_tokens_processed: int = 0
    teacher_tokens_processed: int = 0
    student_first_entropy: float | None = None


@dataclass(frozen=True)
class StopRule:
    """When a row stops: an EOS id, a stop string in the text, or the token budget."""

    eos_ids: frozenset[int]
    stop_strings: tuple[str, ...] = ()
    max_new_tokens: int = 256

    def stop_reason(self, tokenizer, token_ids: list[int]) -> str | None:
        if token_ids[-1] in self.eos_ids:
            return "eos"
        if self.stop_strings:
            tail = tokenizer.decode(token_ids[-self._tail_tokens():], skip_special_tokens=True)
            if any(s in tail for s in self.stop_strings):
                return "stop"
        return "length" if len(token_ids) >= self.max_new_tokens else None

    def _tail_tokens(self) -> int:
        # every token decodes to at least one character, so this window holds any stop string that just completed
        return max(len(s) for s in self.stop_strings) + 1

    def final_text(self, tokenizer, token_ids: list[int]) -> str:
        ids = [t for t in token_ids if t not in self.eos_ids]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop_strings if s in text), default=len(text))
        return text[:cut]


class Decoder:
    """Runs strategies over batches of prompts with a student and (optionally) a teacher runner.

    A runner is a `ModelRunner` or anything with the same prefill/step/close/prompt_cost
    API (a Ray actor proxy), so this loop is the same in process and distributed.
    """

    def __init__(self, student, teacher, tokenizer, stop: StopRule):
        self.student, self.teacher, self.tokenizer, self.stop = student, teacher, tokenizer, stop

    def generate(self, strategy: Strategy, prompts: list[Prompt]) -> list[Generation]:
        session = uuid.uuid4().hex
        primary = self.teacher if strategy.generator == "teacher" else self.student
        advisor = self.teacher if strategy.generator == "student" and strategy.teacher_steps != 0 else None
        gens = [Generation() for _ in prompts]
        try:
            self._run(session, strategy, primary, advisor, prompts, gens)
        finally:
            primary.close(session)
            if advisor is not None:
                advisor.close(session)
        for g in gens:
            g.text = self.stop.final_text(self.tokenizer, g.token_ids)
            if strategy.generator == "teacher":
                g.teacher_tokens = len(g.token_ids)
        return gens

    def _run(self, session, strategy, primary, advisor, prompts, gens) -> None:
        primary_is_student = primary is self.student
        p = probs(primary.prefill(session, prompts))
        for g, prompt, h in zip(gens, prompts, entropy(p).tolist()):
            _add_cost(g, primary_is_student, primary.prompt_cost(prompt))
            if primary_is_student:
                g.student_first_entropy = h

        alphas = strategy.row_alphas(p) if advisor is not None else torch.zeros(len(prompts))
        consulting = [i for i, a in enumerate(alphas.tolist()) if a != 0.0]
        t_logits = self._teacher_prefill(session, advisor, prompts, consulting, gens) if consulting else None
        for i in consulting:
            gens[i].alpha = float(alphas[i])

        active = list(range(len(prompts)))  # original row of each primary batch position
        for t in range(self.stop.max_new_tokens):
            tokens = p.argmax(dim=-1)
            if t_logits is not None:
                self._apply_teacher(strategy, t, p, probs(t_logits).to(p.device), alphas, active, consulting, tokens, gens)
            token_of = dict(zip(active, tokens.tolist()))
            still = [r for r in active if not self._append(gens[r], token_of[r])]
            if not still:
                return
            keep = [active.index(r) for r in still]
            p = probs(primary.step(session, tokens[keep], rows=keep if len(keep) < len(active) else None))
            for r in still:
                _add_cost(gens[r], primary_is_student, 1)
            active = still
            t_logits, consulting = self._teacher_step(session, strategy, advisor, t + 1, consulting, still, token_of, gens)

    def _teacher_prefill(self, session, advisor, prompts, rows, gens) -> torch.Tensor:
        for r in rows:
            gens[r].teacher_tokens_processed += advisor.prompt_cost(prompts[r])
        return advisor.prefill(session, [prompts[r] for r in rows])

    def _apply_teacher(self, strategy, t, p, p_teacher, alphas, active, consulting, tokens, gens) -> None:
        """Overwrite the tokens of the rows that consult the teacher at step t (in place)."""
        pos = torch.tensor([active.index(r) for r in consulting], device=p.device)
        picked, from_teacher = strategy.pick(t, p[pos], p_teacher, alphas[consulting].to(p.device))
        changed = picked != tokens[pos]
        tokens[pos] = picked
        for r, took, diff in zip(consulting, from_teacher.tolist(), changed.tolist()):
            gens[r].teacher_tokens += int(took)
            gens[r].teacher_changed_tokens += int(took and diff)

    def _teacher_step(self, session, strategy, advisor, t, consulting, still, token_of, gens):
        """Advance the teacher's cache for rows that still need it at step t; drop the rest."""
        steps = strategy.teacher_steps
        if not consulting or (steps is not None and t >= steps):
            if consulting:
                advisor.close(session)
            return None, []
        alive = set(still)
        remaining = [r for r in consulting if r in alive]
        if not remaining:
            advisor.close(session)
            return None, []
        keep = [consulting.index(r) for r in remaining]
        fed = torch.tensor([token_of[r] for r in remaining])
        logits = advisor.step(session, fed, rows=keep if len(keep) < len(consulting) else None)
        for r in remaining:
            gens[r].teacher_tokens_processed += 1
        return logits, remaining

    def _append(self, gen: Generation, token: int) -> bool:
        """Record a generated token; True when the row is finished."""
        gen.token_ids.append(token)
        reason = self.stop.stop_reason(self.tokenizer, gen.token_ids)
        if reason is not None:
            gen.finish_reason = reason
        return reason is not None


def _add_cost(gen: Generation, to_student: bool, n: int) -> None:
    if to_student:
        gen.student_tokens_processed += n
    else:
        gen.teacher_tokens_processed += n
