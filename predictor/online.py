"""The α-predictor inside the decoding workers: an artifact handed to the strategies that use it.

`build_strategy` is how a run turns a config entry into a decoding strategy: entries that
name an artifact (`predicted_alpha`, `entropy_gate` with `artifact:`) load it here, once
per process, and the strategy receives the loaded predictor or its calibrated gate.
"""
from __future__ import annotations

import functools

import torch

from pipeline.config.strategies import EntropyGateParams, strategy_params
from pipeline.decoding.features import first_token_stats
from pipeline.decoding.strategies import EntropyGate, Strategy, strategy_from_params
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


def build_strategy(name: str, params: dict | None = None) -> Strategy:
    """The strategy of a config entry, with its artifact (if any) loaded and resolved."""
    validated = strategy_params(name, params)
    artifact = getattr(validated, "artifact", "")
    if not artifact:
        return strategy_from_params(name, validated)
    online = load_online(artifact)
    if isinstance(validated, EntropyGateParams):
        gate = online.gate
        return EntropyGate(gate["alpha"], online.n_tokens, gate["lo"], gate["hi"], artifact=artifact, student=online.student)
    return strategy_from_params(name, validated, online)
