"""A deliberately plain backend (`backend: "plain_backend:plain"`): the mixed prefix through an
in-process engine's sessions, every plain continuation through transformers' own `generate`
on the prompt plus the tokens so far, recomputed from scratch, one row at a time. What a
backend without per-session caches (vLLM, a hosted API) would do; tests check that every
strategy gives the rows the session-keeping engine gives."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.engine.backends import register_backend
from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import Completion, Prompt, Sampler
from pipeline.engine.steps import record_token
from pipeline.engine.stop import StopRule
from pipeline.models.loading import load_model


class PlainGenerator:
    keeps_sessions = False  # continuations come from `generate`, with the prefix as input

    def __init__(self, lm, vocab_size: int, reuse_preamble: bool = True):
        self.lm, self.steps = lm, HFEngine(lm, vocab_size, reuse_preamble)
        self.continued = 0  # rows `generate` continued after a prefix

    def __getattr__(self, name: str):  # the StepEngine part: prefill, step, fork, clone, close, ...
        return getattr(self.steps, name)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], stop: StopRule, sampler: Sampler | None = None,
                 prefixes: Sequence[list[int]] | None = None) -> list[Completion]:
        if sampler is not None:
            raise NotImplementedError("the plain backend decodes greedily")
        rows = []
        for prompt, prefix in zip(prompts, prefixes or [[] for _ in prompts]):
            ids = [*prompt[0], *prompt[1], *prefix]
            out = self.lm.model.generate(torch.tensor([ids], device=self.lm.device), attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.lm.device),
                                         max_new_tokens=stop.max_new_tokens - len(prefix), do_sample=False,
                                         pad_token_id=self.lm.tokenizer.pad_token_id, eos_token_id=sorted(stop.eos_ids) or None)
            row = Completion(token_ids=list(prefix), tokens_processed=len(ids))
            for token in out[0, len(ids):].tolist():
                row.tokens_processed += 1
                if record_token(row, token, stop, self.lm.tokenizer):
                    break
            rows.append(row)
            self.continued += bool(prefix)
        return rows


register_backend("plain", lambda spec, vocab_size, reuse_preamble: PlainGenerator(load_model(spec), vocab_size, reuse_preamble))
