"""Evaluation units that carry every strategy of a batch, against one unit per strategy.

    python -m speed.shared_units [--config configs/demo.yaml] [--examples 600]

(a) one unit per (strategy, batch), as the evaluate job ran before: `Decoder.generate` once
    per strategy, each prefilling both models and decoding every row itself;
(b) one unit per batch (the job's units now): one student prefill and one teacher prefill
    shared by every strategy, the student-greedy decode run once, rows with α = 0 or whose
    mixed prefix is the student's own copied from it (`decode_strategies`).
Same examples, same in-process engines, one thread each. The rows must be identical
(checked). Prints evaluate_vs_per_strategy_units = (a) / (b) and the tokens each model was fed.
"""
from __future__ import annotations

import time

import torch

from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import decode_strategies, generate
from pipeline.tasks.evaluate import built_strategy, for_examples
from speed.in_process import encoded_examples, in_process_decoder, speed_arguments, speed_config


def fed(decoder: Decoder) -> tuple[int, int]:
    return decoder.student.tokens_processed, decoder.teacher.tokens_processed


def main() -> None:
    parser = speed_arguments(__doc__, 600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = speed_config(args)
    decoder = in_process_decoder(config)
    examples, prompts, _ = encoded_examples(config, decoder)
    strategies = [for_examples(built_strategy(spec), examples) for spec in config.strategies]
    size = config.decoding.batch_size
    batches = [prompts[i: i + size] for i in range(0, len(prompts), size)]
    decode_strategies(decoder, strategies, batches[0])  # warm-up, untimed

    def per_strategy():
        return [[g for s in strategies for g in generate(decoder, s, b)] for b in batches]

    def shared():
        return [[g for done in decode_strategies(decoder, strategies, b)[0] for g in done.gens] for b in batches]

    timings, tokens, rows = {}, {}, {}
    for name, run in (("per_strategy", per_strategy), ("shared", shared)):
        before, start = fed(decoder), time.perf_counter()
        rows[name] = run()
        timings[name] = time.perf_counter() - start
        tokens[name] = tuple(after - b for after, b in zip(fed(decoder), before))
    differing = sum(vars(a) != vars(b) for x, y in zip(rows["per_strategy"], rows["shared"]) for a, b in zip(x, y))
    print(f"{len(prompts)} examples × {len(strategies)} strategies, batch {size}")
    for name in timings:
        print(f"{name:>13}: {timings[name]:7.2f} s, student fed {tokens[name][0]:,} tokens, teacher fed {tokens[name][1]:,}")
    print(f"rows that differ: {differing} of {len(prompts) * len(strategies)}")
    print(f"evaluate_vs_per_strategy_units={timings['per_strategy'] / timings['shared']:.2f} "
          f"student_tokens_ratio={tokens['shared'][0] / tokens['per_strategy'][0]:.2f} "
          f"teacher_tokens_ratio={tokens['shared'][1] / tokens['per_strategy'][1]:.2f}")
    assert differing == 0, "shared units changed rows"


if __name__ == "__main__":
    main()
