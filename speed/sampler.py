"""Seeded sampling per step, reproducible per row whatever the batch: the project's sampler
(one seeded uniform per row, the tempered CDF inverted) against what one would otherwise
write for the same guarantee, a generator per row: `torch.multinomial` on the tempered
row, and Gumbel noise over the whole row (this project's sampler before).

    python -m speed.sampler [--rows 16] [--vocab 151936] [--steps 20] [--temperature 0.7]

One thread, Qwen2.5's vocabulary size by default; prints the time per step of each and the
ratios of median times, measured in one run with the samplers taking turns, and checks each draws from the tempered distribution.
"""
from __future__ import annotations

import argparse
import time

import torch

from pipeline.decoding.sampling import Sampler


def _seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % 2**63


def multinomial_per_row(p: torch.Tensor, seeds: list[int], step: int, temperature: float) -> torch.Tensor:
    tempered = torch.softmax(torch.log(p.clamp_min(1e-30)) / temperature, dim=-1)
    return torch.stack([torch.multinomial(tempered[i], 1, generator=torch.Generator().manual_seed(_seed(s, step)))[0]
                        for i, s in enumerate(seeds)])


def gumbel_per_row(p: torch.Tensor, seeds: list[int], step: int, temperature: float) -> torch.Tensor:
    noise = torch.stack([torch.rand(p.shape[-1], generator=torch.Generator().manual_seed(_seed(s, step))).clamp(1e-20, 1 - 1e-7)
                         for s in seeds])
    return (torch.log(p.clamp_min(1e-30)) / temperature - torch.log(-torch.log(noise))).argmax(dim=-1)


def median_ms_per_step(draws: dict, steps: int) -> dict[str, float]:
    """Each sampler's median time per step; the samplers take turns at every step, so a noisy
    moment of the machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in draws}
    for step in range(steps + 1):
        for name, draw in draws.items():
            start = time.perf_counter()
            draw(step)
            if step:  # step 0 warms up
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(args.rows, args.vocab) * 3, dim=-1)
    seeds, rows, t = list(range(args.rows)), list(range(args.rows)), args.temperature
    ours = Sampler(t, seeds)
    times = median_ms_per_step({
        "ours": lambda step: ours(p, [step] * args.rows, rows),
        "multinomial": lambda step: multinomial_per_row(p, seeds, step, t),
        "gumbel": lambda step: gumbel_per_row(p, seeds, step, t),
    }, args.steps)
    small = torch.tensor([[0.5, 0.3, 0.15, 0.05]])  # each draws from the tempered distribution
    want = small.pow(1 / t) / small.pow(1 / t).sum()
    for name, draw in (("ours", lambda s: Sampler(t, [s])(small, [0], [0])), ("multinomial", lambda s: multinomial_per_row(small, [s], 0, t)),
                       ("gumbel", lambda s: gumbel_per_row(small, [s], 0, t))):
        seen = torch.bincount(torch.tensor([int(draw(s)) for s in range(4000)]), minlength=4) / 4000
        assert torch.allclose(seen, want[0], atol=0.03), (name, seen, want)
    print(f"ms_per_step ours={times['ours']:.1f} multinomial={times['multinomial']:.1f} gumbel={times['gumbel']:.1f} "
          f"({args.rows} rows x {args.vocab} tokens, one thread)")
    print(f"ours_vs_multinomial={times['ours'] / times['multinomial']:.2f} ours_vs_gumbel={times['ours'] / times['gumbel']:.2f}")


if __name__ == "__main__":
    main()
