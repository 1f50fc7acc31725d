"""The α-predictor inside the decoding workers: an artifact as the strategies that name one
see it (`pipeline.decoding.strategies.AlphaPolicy`), loaded once per process by
`load_online`, which the task layer hands to `build_strategy`.
"""
from __future__ import annotations

import functools

import torch

from pipeline.decoding.features import first_token_stats
from pipeline.engine.interface import FeatureRequest
from predictor.artifact import Predictor
from predictor.features import assemble


class OnlinePredictor:
    """An `AlphaPolicy` (see `pipeline.decoding.strategies`) backed by an artifact."""

    def __init__(self, predictor: Predictor, source: str):
        self.predictor, self.source = predictor, source
        spec = predictor.feature_spec
        self.spec = spec
        self.student = spec.student
        self.n_tokens = predictor.n_tokens
        self.feature_request = FeatureRequest(tuple(spec.layers), spec.pool)
        self.decision = predictor.policy
        self.needs_teacher = spec.needs_teacher and not predictor.uses_fixed_policy
        self.gate = predictor.meta["entropy_gate"]
        self.budget = predictor.meta.get("budget")  # artifacts of older versions, or labels without positions: none

    def alphas(self, features: torch.Tensor, p_first: torch.Tensor, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        if self.predictor.uses_fixed_policy:  # reads no features: every row decodes with the default α
            return torch.full((len(p_first),), float(self.decision["default_alpha"]), dtype=torch.float64)
        stats = {k: v.cpu().numpy() for k, v in first_token_stats(p_first, p_teacher).items()}
        x = assemble(features.cpu().numpy(), stats, self.spec)
        return torch.from_numpy(self.predictor.predict_alpha(x))


@functools.lru_cache(maxsize=8)
def load_online(directory: str) -> OnlinePredictor:
    """Decoding workers load an artifact once, not per batch."""
    return OnlinePredictor(Predictor.load(directory), directory)
