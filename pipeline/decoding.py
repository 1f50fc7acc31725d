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
    teacher_positions: list[int] = field(default_factory=list)  # indices of those tokens in token_ids
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


class Sampler:
    """Temperature sampling that is reproducible per row whatever the batch: row r's token at
    step t uses Gumbel noise from a generator seeded with (seeds[r], t)."""

    def __init__(self, temperature: float, seeds: list[int]):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.seeds = temperature, seeds

    def __call__(self, p: torch.Tensor, steps: list[int], rows: list[int]) -> torch.Tensor:
        noise = torch.empty_like(p)
        for i, (row, step) in enumerate(zip(rows, steps)):
            gen = torch.Generator().manual_seed((self.seeds[row] * 1_000_003 + step) % 2**63)
            noise[i] = torch.rand(p.shape[-1], generator=gen).clamp(1e-20, 1 - 1e-7).to(p.device)
        gumbel = -torch.log(-torch.log(noise))
        return (torch.log(p.clamp_min(1e-30)) / self.temperature + gumbel).argmax(dim=-1)


class TeacherPhase:
    """The teacher's part of a decoding run: which rows consult it, with which α, until which step.

    `apply` overwrites the tokens of consulting rows at step t; `advance` feeds the
    chosen tokens to the teacher's cache (one call per step per batch) and drops rows
    and steps it is no longer needed for.
    """

    def __init__(self, strategy: Strategy, advisor, session: str, rows: list[int], alphas: torch.Tensor):
        self.strategy, self.advisor, self.session = strategy, advisor, session
        self.rows, self.alphas = rows, alphas
        self.logits: torch.Tensor | None = None

    def start(self, prompts: list[Prompt], gens: list[Generation]) -> None:
        for r in self.rows:
            gens[r].alpha = float(self.alphas[r])
            gens[r].teacher_tokens_processed += self.advisor.prompt_cost(prompts[r])
        self.logits = self.advisor.prefill(self.session, [prompts[r] for r in self.rows])

    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor, gens: list[Generation]) -> None:
        if self.logits is None:
            return
        pos = torch.tensor([active.index(r) for r in self.rows], device=p.device)
        picked, from_teacher = self.strategy.pick(t, p[pos], probs(self.logits).to(p.device), self.alphas[self.rows].to(p.device))
        changed = picked != tokens[pos]
        tokens[pos] = picked
        for r, took, diff in zip(self.rows, from_teacher.tolist(), changed.tolist()):
            if took:
                gens[r].teacher_positions.append(len(gens[r].token_ids))
            gens[r].teacher_tokens += int(took)
            gens[r].teacher_changed_tokens += int(took and diff)

    def advance(self, t: int, still: list[int], token_of: dict[int, int], gens: list[Generation]) -> None:
        """Prepare the teacher's logits for step t, or leave the teacher once it is not needed."""
        if self.logits is None:
            return
        steps = self.strategy.teacher_steps
        alive = set(still)
        remaining = [r for r in self.rows if r in alive]
        if not remaining or (steps is not None and t >= steps):
            self.advisor.close(self.session)
            self.logits, self.rows = None, []
            return
        keep = [self.rows.index(r) for r in remaining]
        fed = torch.tensor([token_of[r] for r in remaining])
        self.logits = self.advisor.step(self.session, fed, rows=keep if len(keep) < len(self.rows) else None)
        self.rows = remaining
        for r in remaining:
            gens[r].teacher_tokens_processed += 1


class Decoder:
    """Runs strategies over batches of prompts with a student and (optionally) a teacher runner.

    A runner is a `ModelRunner` or anything with the same prefill/step/close/prompt_cost
    API (a Ray actor proxy), so this loop is the same in process and distributed.
    """

    def __init__(self, student, teacher, tokenizer, stop: StopRule):
        self.student, self.teacher, self.tokenizer, self.stop = student, teacher, tokenizer, stop

    def generate(self, strategy: Strategy, prompts: list[Prompt], sampler: "Sampler | None" = None) -> list[Generation]:
        """Decode a batch with `strategy`; greedy unless a `sampler` picks the primary's tokens."""
        session = uuid.uuid4().hex
        primary = self.teacher if strategy.generator == "teacher" else self.student
        gens = [Generation() for _ in prompts]
        teacher = None
        try:
            p, features = self._prefill(session, strategy, primary, prompts, gens)
            teacher = self._teacher_phase(session, strategy, primary, p, features)
            if teacher is not None:
                teacher.start(prompts, gens)
            self.decode_loop(session, primary, p, gens, list(range(len(prompts))), teacher, sampler)
        finally:
            primary.close(session)
            if teacher is not None and teacher.logits is not None:
                self.teacher.close(session)
        for g in gens:
            g.text = self.stop.final_text(self.tokenizer, g.token_ids)
            if strategy.generator == "teacher":
                g.teacher_tokens, g.teacher_positions = len(g.token_ids), list(range(len(g.token_ids)))
        return gens

    def _prefill(self, session, strategy, primary, prompts, gens) -> tuple[torch.Tensor, torch.Tensor | None]:
        request = strategy.feature_request if primary is self.student else None
        if request is None:
            logits, features = primary.prefill(session, prompts), None
        else:
            logits, features = primary.prefill_with_features(session, prompts, *request)
        p = probs(logits)
        is_student = primary is self.student
        for g, prompt, h in zip(gens, prompts, entropy(p).tolist()):
            _add_cost(g, is_student, primary.prompt_cost(prompt))
            if is_student:
                g.student_first_entropy = h
        return p, features

    def _teacher_phase(self, session, strategy, primary, p_first, features) -> TeacherPhase | None:
        if primary is not self.student or strategy.teacher_steps == 0:
            return None
        alphas = strategy.row_alphas(p_first, features).cpu()
        rows = [i for i, a in enumerate(alphas.tolist()) if a != 0.0]
        return TeacherPhase(strategy, self.teacher, session, rows, alphas) if rows else None

    def decode_loop(
        self, session: str, primary, p: torch.Tensor, gens: list[Generation], active: list[int],
        teacher: TeacherPhase | None = None, sampler: "Sampler | None" = None,
    ) -> None:
        """Greedy steps until every active row stopped; `active[i]` is the gens index of batch row i.

        Rows may arrive with tokens already generated (a continuation): the stop rule
        counts them against max_new_tokens.
        """
        is_student = primary is self.student
        while active:
            tokens = p.argmax(dim=-1) if sampler is None else sampler(p, [len(gens[r].token_ids) for r in active], active)
            if teacher is not None:
                teacher.apply(len(gens[active[0]].token_ids), p, active, tokens, gens)
            token_of = dict(zip(active, tokens.tolist()))
            still = [r for r in active if not self.append_token(gens[r], token_of[r])]
            if not still:
                return
            keep = [active.index(r) for r in still]
            p = probs(primary.step(session, tokens[keep], rows=keep if len(keep) < len(active) else None))
            for r in still:
                _add_cost(gens[r], is_student, 1)
            if teacher is not None:
                teacher.advance(len(gens[still[0]].token_ids), still, token_of, gens)
            active = still

    def append_token(self, gen: Generation, token: int) -> bool:
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
