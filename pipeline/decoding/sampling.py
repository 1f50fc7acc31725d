"""Seeded temperature sampling, reproducible per row whatever the batch."""
from __future__ import annotations

import torch


class Sampler:
    """Temperature sampling that is reproducible per row whatever the batch: row r's token at
    step t uses Gumbel noise from a generator seeded with (seeds[r], t). An engine
    `Sampler`: (probabilities [R, V], steps per row, row indices) -> tokens [R]."""

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
