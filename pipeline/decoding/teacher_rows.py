"""One strategy's rows with the teacher, as the two teacher hooks of the step loop hold them
(`lockstep.Lockstep`, `on_demand.OnDemand`), and how a teacher token is recorded in a row."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.decoding.generation import Consultation, Generation
from pipeline.decoding.strategies import Strategy
from pipeline.decoding.teacher_next import TeacherNext


@dataclass
class TeacherRows:
    """A strategy's rows that consult the teacher, in one teacher session.

    `rows` are the student batch's rows still with the teacher, in the session's row order
    (on demand, the session drops the others at its next catch-up: `slot` maps each batch
    row to its session row until then, and `fed` counts the tokens of each row the teacher
    has read). `next` is the teacher's distribution for `rows` at the coming step (lockstep),
    or its prefill's (on demand)."""

    strategy: Strategy
    session: str
    rows: list[int]
    next: TeacherNext | None
    slot: dict[int, int] = field(default_factory=dict)
    fed: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.slot = {b: i for i, b in enumerate(self.rows)}
        self.fed = dict.fromkeys(self.rows, 0)

    @property
    def steps(self) -> int | None:
        return self.strategy.plan.steps

    @property
    def budget(self) -> int | None:
        return self.strategy.plan.budget

    def spent(self, gens: list[Generation], rows: list[int], device: torch.device) -> torch.Tensor | None:
        """Teacher tokens each of `rows` has taken so far, where the plan has a budget."""
        return None if self.budget is None else torch.tensor([gens[b].teacher_tokens for b in rows], device=device)

    def staying(self, t: int, alive: set[int], gens: list[Generation]) -> list[int]:
        """The rows that still need the teacher after t tokens: alive, with budget left, before the plan's last step."""
        if self.steps is not None and t >= self.steps:
            return []
        return [b for b in self.rows if b in alive and (self.budget is None or gens[b].teacher_tokens < self.budget)]

    def pick(self, t: int, p: torch.Tensor, at: dict[int, int], rows: list[int], teacher: TeacherNext,
             alphas: torch.Tensor, gens: list[Generation], tokens: torch.Tensor, on_demand: bool) -> None:
        """The tokens of `rows` at step t (each row's own α from `alphas`, indexed by batch row),
        written into `tokens` (the batch's, `at`: batch row → position), each teacher token recorded."""
        pos = torch.tensor([at[b] for b in rows], device=p.device)
        alphas = self.strategy.alphas_at(t, alphas[rows].to(p.device))
        picked, took = self.strategy.pick(t, p[pos], teacher, alphas, self.spent(gens, rows, p.device))
        if bool(took.any()):
            record(self.strategy, gens, t, rows, p[pos], alphas, picked, took, tokens[pos], on_demand)
        tokens[pos] = picked


def record(strategy: Strategy, gens: list[Generation], t: int, rows: list[int], p: torch.Tensor, alphas: torch.Tensor,
           picked: torch.Tensor, took: torch.Tensor, own: torch.Tensor, on_demand: bool) -> None:
    """Each token the teacher decided in `rows` at step t: where, how unsure the student was, α, and whether it changed."""
    unsure, changed = strategy.uncertainty(p).tolist(), (picked != own).tolist()
    for i, b in enumerate(rows):
        if took[i]:
            gen = gens[b]
            gen.teacher_positions.append(len(gen.token_ids))
            gen.consultations.append(Consultation(t, unsure[i], float(alphas[i]), changed[i]))
            gen.teacher_tokens += 1
            gen.teacher_changed_tokens += int(changed[i])
            if on_demand and gen.alpha == 0.0:
                gen.alpha = float(alphas[i])

