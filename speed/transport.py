"""Bytes the teacher sends per mixed step: its top-k with the certified argmax, against full rows.

    python -m speed.transport [--rows 32] [--steps 4] [--top-k 32]

A student and a teacher with Qwen2.5's 151,936-token vocabulary (tiny layers, peaked
outputs: `speed/big_vocab.py`) decode the same batch with fixed α (0.5, 1, 2 and −1, N =
`--steps`) through a real Ray teacher actor, once with full float32 rows and once with
the top-k; the tokens must agree (checked). Prints the bytes received per row and call,
the full row's size, the share of rows that needed their full row, and SWITCH's bytes
(it reads whole distributions at every step, which cross as bfloat16).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import ray

from pipeline.config import ModelSpec
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import FixedAlpha, Switch
from pipeline.engine.hf import HFEngine
from pipeline.engine.remote import RemoteEngine
from pipeline.engine.stop import StopRule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.actors import ModelActor
from pipeline.runtime.cluster import connect
from speed.big_vocab import big_vocab_prompts, save_big_vocab_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s_dir, t_dir = save_big_vocab_pair(Path(tmp))
        s, t = ModelSpec(str(s_dir), "float32"), ModelSpec(str(t_dir), "float32")
        vocab = shared_vocab_size(model_facts(s), model_facts(t))
        lm = load_model(s)
        prompts = big_vocab_prompts(lm.tokenizer, args.rows)
        stop = StopRule(frozenset({lm.tokenizer.eos_token_id}), (), args.steps)
        connect()
        actor = ModelActor.options(num_cpus=0.5).remote(t, vocab, True)
        strategies = [FixedAlpha(a, args.steps) for a in (0.5, 1.0, 2.0, -1.0)]
        measured = {}
        for k in (None, args.top_k):
            remote = RemoteEngine(actor, True)
            decoder = Decoder(HFEngine(lm, vocab), remote, lm.tokenizer, stop, teacher_top_k=k)
            tokens = [[g.token_ids for g in generate(decoder, st, prompts)] for st in strategies]
            measured[k] = (tokens, remote.bytes_received / remote.calls / args.rows, remote.rows_fetched)
        fetched = RemoteEngine(actor, True)
        decoder = Decoder(HFEngine(lm, vocab), fetched, lm.tokenizer, stop, teacher_top_k=args.top_k)
        switch_tokens = generate(decoder, Switch(0.1, 0.1), prompts)
        switch_bytes = fetched.bytes_received / fetched.calls / args.rows
        ray.shutdown()
    mismatches = sum(a != b for a, b in zip(measured[None][0], measured[args.top_k][0]))
    full_row = 4 * vocab
    compact = measured[args.top_k][1]
    print(f"vocabulary {vocab:,}; {args.rows} rows, {args.steps} mixed steps, α in 0.5, 1, 2, −1; "
          f"strategies whose tokens differ between full and top-{args.top_k} rows: {mismatches} of {len(strategies)}")
    print(f"SWITCH (whole rows at every step, sent as bfloat16): {switch_bytes:,.0f} bytes per row and call "
          f"(float32 rows: {full_row:,}); {sum(len(g.token_ids) for g in switch_tokens)} tokens decoded")
    mixed_rows = len(strategies) * args.rows * args.steps
    print(f"rows whose full row was fetched (the certificate could not settle them): "
          f"{measured[args.top_k][2]} of {mixed_rows} mixed rows")
    print(f"teacher_bytes_per_step={compact:.0f} full_row_bytes_per_step={full_row} "
          f"ratio={compact / full_row:.5f} (full rows as sent before: {measured[None][1]:.0f})")
    assert mismatches == 0, "top-k transport changed tokens"


if __name__ == "__main__":
    main()
