"""α-label speed: the prefix-tree engine against the same batched engine run once per α.

    python -m speed.label_alpha [--config configs/demo.yaml] [--examples 200]

(a) per-α engine: what a competent user would otherwise run, the batched, KV-cached
    decoder with `FixedAlpha(α, N)` once for every α of the grid;
(b) the label job's engine: one prefix tree over the grid, each distinct leaf continued once.
Both run on the same examples in this process and must give the same tokens (checked). The
minimum is DESIGN.md's cost model: distinct leaves × one batched student-greedy decode plus
the teacher's prefill and N steps, each timed here.
"""
from __future__ import annotations

import time

import torch

from pipeline.data.datasets import load_examples
from pipeline.data.prompts import encode_prompt, load_template
from pipeline.decoding.alpha_tree import label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import FixedAlpha, Student
from pipeline.engine.hf import HFEngine
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.placement import run_stop_rule
from speed.in_process import speed_arguments, speed_config


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = speed_arguments(__doc__, 200)
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides on one core: a fair, less noisy comparison

    config = speed_config(args)
    settings, n = config.labels, config.labels.n_tokens
    student, teacher = load_model(config.student), load_model(config.teacher)
    vocab = shared_vocab_size(model_facts(config.student), model_facts(config.teacher))
    template = load_template(config.prompt)
    stop = run_stop_rule(config)
    examples = load_examples(config.dataset)
    prompts = [encode_prompt(student.tokenizer, template, ex.question) for ex in examples]
    size = config.decoding.batch_size
    batches = [prompts[i : i + size] for i in range(0, len(prompts), size)]

    def engine():
        decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)
        labels = [lab for batch in batches for lab in label_batch(decoder, batch, settings)]
        return labels, decoder

    (labels, decoder), t_engine = timed(engine)
    engine_tokens = (decoder.student.tokens_processed, decoder.teacher.tokens_processed)
    per_alpha, t_per_alpha = timed(lambda: [
        [g.token_ids for b in batches for g in generate(decoder, FixedAlpha(a, n), b)] for a in settings.alpha_grid
    ])
    _, t_student = timed(lambda: [generate(decoder, Student(), b) for b in batches])

    def teacher_prefill_and_steps():
        runner = HFEngine(teacher, vocab)
        for b in batches:
            logits = runner.prefill("t", b).logits
            for _ in range(n - 1):
                logits = runner.step("t", logits.argmax(dim=-1)).logits
            runner.close("t")
    _, t_teacher = timed(teacher_prefill_and_steps)

    mismatches = sum(
        lab.leaves[lab.leaf_of_alpha[ai]].gen.token_ids != per_alpha[ai][e]
        for e, lab in enumerate(labels) for ai in range(len(settings.alpha_grid))
    )
    leaves = sum(len(lab.leaves) for lab in labels) / len(labels)
    minimum = leaves * t_student + t_teacher
    print(f"examples={len(labels)} alphas={len(settings.alpha_grid)} N={n} batch={size}")
    print(f"batched engine once per α:          {t_per_alpha:8.2f} s")
    print(f"prefix-tree engine:                 {t_engine:8.2f} s")
    print(f"student greedy, batched:            {t_student:8.2f} s   teacher prefill + N steps: {t_teacher:.2f} s")
    print(f"tokens processed by the engine: student {engine_tokens[0]}, teacher {engine_tokens[1]}")
    print(f"label mismatches tree vs per-α engine: {mismatches} of {len(labels) * len(settings.alpha_grid)}")
    print(f"label_vs_per_alpha_engine={t_per_alpha / t_engine:.2f} leaves_per_example={leaves:.2f} work_vs_minimum={t_engine / minimum:.2f}")


if __name__ == "__main__":
    main()
