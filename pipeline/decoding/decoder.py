"""The decoder: the two engines, the stop rule, and the student's plain continuations every
strategy ends with. It knows no strategy: `pipeline.decoding.shared_batch.generate` hands a
batch to the one orchestration, which runs `decode_steps` (the engine's one step loop) with
the teacher hooks in; a strategy that decodes on its own (the teacher alone, CoT-decoding's
branches) does so in its module, with this decoder's engines.
"""
from __future__ import annotations

import torch

from pipeline.decoding.generation import Generation
from pipeline.engine.interface import Generator, Prompt, Sampler, StepEngine
from pipeline.engine.steps import decode_steps, record_token
from pipeline.engine.stop import StopRule


class Decoder:
    """A student engine, a teacher engine, the tokenizer and the stop rule. Either engine may
    be in process (`HFEngine`) or behind a Ray actor (`RemoteEngine`): the loop is the same."""

    def __init__(self, student: StepEngine, teacher: StepEngine | Generator, tokenizer, stop: StopRule,
                 teacher_top_k: int | None = 32):
        self.student, self.teacher, self.tokenizer, self.stop = student, teacher, tokenizer, stop
        self.teacher_top_k = teacher_top_k  # what a remote teacher sends per row and step (None: full rows)

    @property
    def keeps_sessions(self) -> bool:
        """Whether the student continues rows in its session's KV cache (transformers) or, a
        backend without one, through `Generator.generate` with the tokens so far as a prefix."""
        return getattr(self.student, "keeps_sessions", True)

    def continue_greedy(self, session: str, p: torch.Tensor, gens: list[Generation], sampler: Sampler | None = None,
                        prompts: list[Prompt] | None = None) -> None:
        """The student alone, greedily (or as `sampler` draws), from an open session whose rows
        are `gens` (each may already hold tokens) and whose next-token probabilities are `p`;
        `prompts` (one per row) let a backend without sessions continue them instead."""
        if self.keeps_sessions or prompts is None:
            decode_steps(self.student, session, p, gens, list(range(len(gens))), self.stop, self.tokenizer, sampler)
        else:
            self.continue_plain(prompts, gens, list(range(len(gens))), sampler)

    def continue_plain(self, prompts: list[Prompt], gens: list[Generation], rows: list[int], sampler: Sampler | None = None) -> None:
        """Rows `rows` of `gens` continued to the stop rule by the student's `Generator`, from
        their prompt and the tokens they hold (one call for all of them)."""
        done = self.student.generate([prompts[r] for r in rows], self.stop, sampler, prefixes=[gens[r].token_ids for r in rows])
        for r, row in zip(rows, done):
            gen = gens[r]
            gen.token_ids, gen.finish_reason = list(row.token_ids), row.finish_reason
            gen.tokens_processed += row.tokens_processed

    def record(self, gen: Generation, token: int) -> bool:
        """Append a token chosen outside the loop; True when the row is finished."""
        return record_token(gen, token, self.stop, self.tokenizer)

    def finish_text(self, gen: Generation) -> str:
        return self.stop.final_text(self.tokenizer, gen.token_ids)
