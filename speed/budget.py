"""What a budget spent anywhere costs in wall time, and what its catch-up saves.

    python -m speed.budget [--config configs/demo.yaml] [--examples 600]

(a) `budget_vs_predicted_alpha`: the calibrated budget of artifacts/alpha-demo-v3 against the
    same artifact's predicted α (first token only), each decoded alone, batch by batch: what
    watching the student's uncertainty at every step, and asking the teacher later, adds;
(b) `lockstep_vs_catch_up`: one fixed budget (K = 2, margin < 0.5, α = 0.5) decoded as the
    strategy does it (the teacher left alone between consultations, caught up on what the
    row wrote at each) against the teacher stepped along with every token until the row's
    budget is spent (what the strategy did before the catch-up). The rows must be identical
    (checked); the teacher's tokens read differ.
Same examples, same in-process engines, one thread each.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import build_strategy
from pipeline.decoding.strategies import Budget
from pipeline.decoding.teacher_next import mixed_argmax
from predictor.online import load_online
from speed.in_process import encoded_examples, in_process_decoder, speed_arguments, speed_config

ARTIFACT = "artifacts/alpha-demo-v3"


class LockstepBudget(Budget):
    """The same budget with the teacher stepped along every token until it is spent."""

    @property
    def plan(self):
        return dataclasses.replace(super().plan, on_demand=False)

    def pick(self, t, p_student, teacher, alphas, spent=None):
        take = self.consults(t, p_student, alphas, spent)
        return torch.where(take, mixed_argmax(p_student, teacher, alphas), p_student.argmax(dim=-1)), take


def main() -> None:
    args = speed_arguments(__doc__, 600).parse_args()
    torch.set_num_threads(1)
    config = speed_config(args)
    decoder = in_process_decoder(config)
    _, prompts, _ = encoded_examples(config, decoder)
    size = config.decoding.batch_size
    batches = [prompts[i: i + size] for i in range(0, len(prompts), size)]
    fixed = {"k": 2, "threshold": 0.5, "signal": "margin", "alpha": 0.5}
    strategies = {
        "predicted_alpha": build_strategy("predicted_alpha", {"artifact": ARTIFACT}, load_online),
        "budget": build_strategy("budget", {"artifact": ARTIFACT}, load_online),
        "catch_up": build_strategy("budget", fixed),
        "lockstep": LockstepBudget(**fixed),
    }
    for strategy in strategies.values():  # warm-up, untimed
        generate(decoder, strategy, batches[0])
    seconds, rows = {}, {}
    for name, strategy in strategies.items():
        start = time.perf_counter()
        rows[name] = [g for b in batches for g in generate(decoder, strategy, b)]
        seconds[name] = time.perf_counter() - start
    print(f"{len(prompts)} examples, batch {size}")
    for name, gens in rows.items():
        per = lambda field: sum(getattr(g, field) for g in gens) / len(gens)  # noqa: E731
        print(f"{name:>15}: {seconds[name]:6.2f} s, teacher tokens decided {per('teacher_tokens'):.2f}, "
              f"read {per('teacher_tokens_processed'):.1f}, calls {per('teacher_calls'):.2f} per example")
    same = [(a.token_ids, a.teacher_positions) == (b.token_ids, b.teacher_positions) for a, b in zip(rows["catch_up"], rows["lockstep"])]
    print(f"rows that differ between catch-up and lockstep: {same.count(False)} of {len(same)}")
    print(f"budget_vs_predicted_alpha={seconds['budget'] / seconds['predicted_alpha']:.2f} "
          f"lockstep_vs_catch_up={seconds['lockstep'] / seconds['catch_up']:.2f}")
    assert all(same), "the catch-up changed rows"


if __name__ == "__main__":
    main()
