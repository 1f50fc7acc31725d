"""Rebuild the built-in demo world (data, tokenizer, student, teacher) from a seed.

    python -m jobs.build_demo [--world demo|hard] [--out DIR] [--seed S] [--threads T]
    python -m jobs.build_demo --check [--world demo|hard] [--out DIR]

Defaults rebuild the shipped `demo_world/` with seed 0 (what produced the shipped files);
`--world hard` the world of small, partly predictable gains in `demo_world_hard/`.
Training runs on CPU with a fixed thread count; the same seed and thread count give the
same data and models, byte for byte: `--check` rebuilds into a temporary directory and
compares every file's sha256 with those recorded in DIR/world.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import run_main
from pipeline.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from pipeline.demo.world import DEFAULT_SEED, WORLD_ROOTS, build_demo_world, check_demo_world, demo_paths

    ap = argparse.ArgumentParser(prog="python -m jobs.build_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=list(WORLD_ROOTS), default="demo",
                    help="demo: the built-in world; hard: small gains, the family cue hidden on 60 %% of problems")
    ap.add_argument("--out", type=Path, default=None,
                    help="world directory (default: the shipped one, " + ", ".join(f"{k}: {v}" for k, v in WORLD_ROOTS.items()) + ")")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="world seed (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per model; teacher and student train at once (default: 1, or as recorded for --check)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary directory and compare file hashes with DIR/world.json")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be an integer from 0 to {2**32 - 1}, got {args.seed}")
    if args.check and args.seed != DEFAULT_SEED:
        raise UserError("--check rebuilds the world as recorded in its world.json (its seed included): drop --seed")
    if args.check:
        try:
            differing = check_demo_world(args.out, args.threads, world=args.world)
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
        if differing:
            print(f"rebuild differs from {demo_paths(args.out, args.world).root} in {len(differing)} files: {', '.join(differing)}")
            return 1
        print(f"rebuild reproduces {demo_paths(args.out, args.world).root} byte for byte")
        return 0
    build_demo_world(args.out, args.seed, threads=args.threads or 1, world=args.world)
    return 0


if __name__ == "__main__":
    run_main(main)
