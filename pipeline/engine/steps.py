"""The one step loop: feed each row's chosen token until every row has stopped.

`HFEngine.generate` runs it plain; the decoder runs it with its teacher hooks as the
`StepHook` that may overwrite tokens (mixing, SWITCH) and keeps the teacher in step, its
step sent before the engine's own so the two models compute at once.
"""
from __future__ import annotations

from typing import Protocol

import torch

from pipeline.engine.interface import Completion, Sampler, StepEngine
from pipeline.engine.stop import StopRule


class StepHook(Protocol):
    def apply(self, t: int, p: torch.Tensor, active: list[int], tokens: torch.Tensor) -> None:
        """May overwrite `tokens` (one per active row) before they are recorded, at step t."""

    def send(self, t: int, still: list[int], token_of: dict[int, int]) -> list[int]:
        """Called before the engine's step with the rows still decoding (start the other model's
        step); returns those the engine still steps (the hook may have taken some out: rows
        whose continuation it knows already, or hands to a plain continuation elsewhere)."""

    def receive(self) -> None:
        """Called after the engine's step (wait for what `send` started)."""


def record_token(row: Completion, token: int, stop: StopRule, tokenizer) -> bool:
    """Append a generated token; True when the row is finished."""
    row.token_ids.append(token)
    reason = stop.stop_reason(tokenizer, row.token_ids)
    if reason is not None:
        row.finish_reason = reason
    return reason is not None


def decode_steps(
    engine: StepEngine, session: str, p: torch.Tensor, rows: list[Completion], active: list[int],
    stop: StopRule, tokenizer, sampler: Sampler | None = None, hook: StepHook | None = None,
) -> None:
    """Steps until every active row stopped (or the hook took it out); `active[i]` is the
    `rows` index of batch row i and `p` the batch's next-token probabilities. Rows may arrive
    with tokens already generated (a continuation): the stop rule counts them against
    max_new_tokens."""
    while active:
        tokens = p.argmax(dim=-1) if sampler is None else sampler(p, [len(rows[r].token_ids) for r in active], active)
        if hook is not None:
            hook.apply(len(rows[active[0]].token_ids), p, active, tokens)
        token_of = dict(zip(active, tokens.tolist()))
        still = [r for r in active if not record_token(rows[r], token_of[r], stop, tokenizer)]
        if not still:
            return
        if hook is not None:  # the teacher's step runs while the engine's does
            still = hook.send(len(rows[still[0]].token_ids), still, token_of)
            if not still:
                return
        at = {r: i for i, r in enumerate(active)}
        keep = [at[r] for r in still]
        p = engine.step(session, tokens[keep], rows=keep if len(keep) < len(active) else None).probs
        for r in still:
            rows[r].tokens_processed += 1
        if hook is not None:
            hook.receive()
        active = still
