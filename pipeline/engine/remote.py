"""The engine interface over a Ray actor that holds an `HFEngine` (`runtime.actors.ModelActor`).

One Ray round trip per call: per step per batch for the mixed prefix, one call for a
whole `generate` (the model decodes alone inside its actor). Tensors cross as numpy.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ray
import torch

from pipeline.engine.interface import Completion, FeatureRequest, NextToken, Prompt, Sampler, prompt_cost
from pipeline.engine.stop import StopRule


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Ray hands numpy results over read-only (zero-copy from its object store): copy once."""
    return torch.from_numpy(np.array(array))


class RemoteEngine:
    """`StepEngine` and `Generator` over a ModelActor handle."""

    def __init__(self, handle, reuse_preamble: bool):
        self.handle = handle
        self.reuse_preamble = reuse_preamble

    @property
    def tokens_processed(self) -> int:
        return ray.get(self.handle.tokens_processed.remote())

    def prefill(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> NextToken:
        logits, feats = ray.get(self.handle.prefill.remote(session, list(prompts), features))
        return NextToken(_tensor(logits), None if feats is None else _tensor(feats))

    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> NextToken:
        return NextToken(_tensor(ray.get(self.handle.step.remote(session, tokens.cpu().numpy(), rows))))

    def fork(self, session: str, rows: list[int]) -> None:
        ray.get(self.handle.fork.remote(session, rows))

    def close(self, session: str) -> None:
        self.handle.close.remote(session)  # fire and forget: frees the remote cache

    def prompt_cost(self, prompt: Prompt) -> int:
        return prompt_cost(prompt, self.reuse_preamble)

    def generate(self, prompts: Sequence[Prompt], stop: StopRule, sampler: Sampler | None = None) -> list[Completion]:
        return ray.get(self.handle.generate.remote(list(prompts), stop, sampler))

    def completion_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[list[int]]) -> list[list[float]]:
        return ray.get(self.handle.completion_logprobs.remote(list(prompts), list(completions)))
