"""Seeded temperature sampling, reproducible per row whatever the batch."""
from __future__ import annotations

import random

import torch


class Sampler:
    """Temperature sampling that is reproducible per row whatever the batch: row r's token at
    step t is drawn by inverting the tempered distribution's CDF at one uniform number seeded
    with (seeds[r], t). One number per row and step, not a vocabulary-wide noise row per row,
    and the work runs on the rows' device (`python -m speed.sampler` compares). An engine
    `Sampler`: (probabilities [R, V], steps per row, row indices) -> tokens [R]."""

    def __init__(self, temperature: float, seeds: list[int]):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.seeds = temperature, seeds

    def __call__(self, p: torch.Tensor, steps: list[int], rows: list[int]) -> torch.Tensor:
        p = p.float()
        # ∝ softmax(log p / T), scaled by each row's top probability (whose power stays 1, so no
        # row underflows to all zeros at a low temperature); the draw below scales by the sum
        tempered = (p / p.amax(dim=-1, keepdim=True)).pow(1.0 / self.temperature)
        cdf = tempered.double().cumsum(dim=-1)  # float64: the last entries of a 152k-term sum stay exact enough
        draws = [random.Random((self.seeds[row] * 1_000_003 + step) % 2**63).random() for row, step in zip(rows, steps)]
        u = torch.tensor(draws, dtype=cdf.dtype, device=cdf.device).unsqueeze(1) * cdf[:, -1:]
        # right: a draw on a flat stretch of the CDF (a token of probability 0) goes past it
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(p.shape[-1] - 1)
