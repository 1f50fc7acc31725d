"""CoT-decoding on the demo world: does branching on the first token find the right path, and
do teacher mixing and branching add up?

    python -m speed.cot_decoding [--config configs/demo.yaml] [--examples 600]

In process, on the same examples: student greedy, fixed α = 1 (N = 1), cot_decoding with
k = 3 (the demo's first token has three meaningful choices: Add, Subtract, Multiply) and
k = 10 (the paper's default), and cot_decoding branching on the mixed first-token
distribution with α = 1 and α = 0.5 (at k = 3 and k = 10). Prints `name=value` lines: accuracy overall and per
family, how often a branch other than the greedy one was kept, seconds per run, and the
share of problems where some student branch is right (a perfect choice among the paths).
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict

import torch

from pipeline.data.answer_span import answer_span
from pipeline.data.answer_types import score
from pipeline.decoding.cot import decode_branches
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import CotDecoding, FixedAlpha, Student
from speed.in_process import encoded_examples, in_process_decoder, speed_arguments, speed_config

STRATEGIES = {
    "student": Student(),
    "fixed_alpha_1": FixedAlpha(1.0, 1),
    "cot_k3": CotDecoding(k=3, answer_span=answer_span),
    "cot_k10": CotDecoding(k=10, answer_span=answer_span),
    "cot_k3_alpha1": CotDecoding(k=3, alpha=1.0, answer_span=answer_span),
    "cot_k3_alpha0.5": CotDecoding(k=3, alpha=0.5, answer_span=answer_span),
    "cot_k10_alpha1": CotDecoding(k=10, alpha=1.0, answer_span=answer_span),
    "cot_k10_alpha0.5": CotDecoding(k=10, alpha=0.5, answer_span=answer_span),
}


def branch_oracle(decoder: Decoder, prompts: list, examples: list, k: int, size: int) -> float:
    """Share of problems where some student branch is right: what a perfect choice among the
    k paths would score (the confidence's ceiling)."""
    hits = 0
    for i in range(0, len(prompts), size):
        session = uuid.uuid4().hex
        p = decoder.student.prefill(session, prompts[i : i + size]).probs
        rows = decode_branches(decoder.student, session, p, k, decoder.stop, decoder.tokenizer)
        decoder.student.close(session)
        hits += sum(any(score(decoder.finish_text(b), ex).correct for b in row) for row, ex in zip(rows, examples[i : i + size]))
    return hits / len(prompts)


def main() -> None:
    parser = speed_arguments(__doc__, 600)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = speed_config(args)
    decoder = in_process_decoder(config)
    examples, prompts, _ = encoded_examples(config, decoder)
    size = config.decoding.batch_size
    print(f"examples={len(examples)} batch={size}")
    for name, strategy in STRATEGIES.items():
        start = time.perf_counter()
        gens = [g for i in range(0, len(prompts), size) for g in generate(decoder, strategy, prompts[i : i + size])]
        seconds = time.perf_counter() - start
        correct = [score(g.text, ex).correct for g, ex in zip(gens, examples)]
        by_family = defaultdict(list)
        for ok, ex in zip(correct, examples):
            by_family[ex.group].append(ok)
        print(f"accuracy_{name}={sum(correct) / len(correct):.3f}")
        for family, oks in sorted(by_family.items()):
            print(f"accuracy_{name}_{family}={sum(oks) / len(oks):.3f}")
        if isinstance(strategy, CotDecoding):
            print(f"non_greedy_branch_{name}={sum(g.cot_branch != 0 for g in gens) / len(gens):.3f}")
        print(f"teacher_tokens_per_example_{name}={sum(g.teacher_tokens for g in gens) / len(gens):.2f}")
        print(f"seconds_{name}={seconds:.2f}")
    for k in (3, 10):
        print(f"branch_oracle_k{k}={branch_oracle(decoder, prompts, examples, k, size):.3f}")


if __name__ == "__main__":
    main()
