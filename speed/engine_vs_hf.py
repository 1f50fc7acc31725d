"""Student greedy decoding: this project's engine against transformers' `generate`.

    python -m speed.engine_vs_hf [--config configs/demo.yaml] [--examples 200]

Both decode the same batches greedily with a KV cache, in this process, on one thread;
the tokens must agree (checked up to where our stop rule ends a row). Prints
`engine_vs_hf_generate=` (HF's time over ours: ≥ 1 means the engine is at least as fast).
"""
from __future__ import annotations

import time

import torch

from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Student
from speed.in_process import encoded_examples, in_process_decoder, speed_arguments, speed_config


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@torch.inference_mode()
def hf_generate(lm, batch, max_new_tokens: int, eos: list[int], stop_strings: tuple[str, ...]) -> list[list[int]]:
    """transformers' own batched greedy generate, left-padded, cache on, same stop strings."""
    seqs = [p + s for p, s in batch]
    width = max(len(s) for s in seqs)
    pad = lm.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                            eos_token_id=eos, pad_token_id=pad, stop_strings=list(stop_strings) or None,
                            tokenizer=lm.tokenizer)
    return [row[width:].tolist() for row in out]


def main() -> None:
    parser = speed_arguments(__doc__, 200)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = speed_config(args)
    # the engine reuses the few-shot preamble's cache; HF's generate re-encodes it: give both the full prompt
    decoder = in_process_decoder(config, reuse_preamble=False)
    student = decoder.student.lm
    eos = sorted(decoder.stop.eos_ids)
    _, prompts, template = encoded_examples(config, decoder)
    size = config.decoding.batch_size
    batches = [prompts[i : i + size] for i in range(0, len(prompts), size)]

    ours, t_ours = timed(lambda: [g.token_ids for b in batches for g in generate(decoder, Student(), b)])
    theirs, t_hf = timed(lambda: [t for b in batches for t in hf_generate(student, b, config.decoding.max_new_tokens, eos, template.stop_strings)])
    mismatches = sum(a != b[: len(a)] for a, b in zip(ours, theirs))
    print(f"examples={len(prompts)} batch={size} max_new_tokens={config.decoding.max_new_tokens}")
    print(f"engine (Decoder, Student):   {t_ours:8.2f} s")
    print(f"transformers generate:       {t_hf:8.2f} s")
    print(f"token mismatches (engine row vs the same prefix of HF's): {mismatches} of {len(ours)}")
    print(f"engine_vs_hf_generate={t_hf / t_ours:.2f}")


if __name__ == "__main__":
    main()
