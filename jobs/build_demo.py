"""Rebuild the built-in demo world (data, tokenizer, student, teacher) from a seed.

    python -m jobs.build_demo [--out DIR] [--seed S] [--threads T]
    python -m jobs.build_demo --check [--out DIR]

Defaults rebuild the shipped `demo_world/` with seed 0 (what produced the shipped files).
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
    from pipeline.demo.world import DEFAULT_SEED, build_demo_world, check_demo_world, demo_paths

    ap = argparse.ArgumentParser(prog="python -m jobs.build_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help=f"world directory (default: {demo_paths().root})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="world seed (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per model; teacher and student train at once (default: 1, or as recorded for --check)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary directory and compare file hashes with DIR/world.json")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    if args.check and args.seed != DEFAULT_SEED:
        raise UserError("--check rebuilds the world as recorded in its world.json (its seed included): drop --seed")
    if args.check:
        try:
            differing = check_demo_world(args.out, args.threads)
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
        if differing:
            print(f"rebuild differs from {demo_paths(args.out).root} in {len(differing)} files: {', '.join(differing)}")
            return 1
        print(f"rebuild reproduces {demo_paths(args.out).root} byte for byte")
        return 0
    build_demo_world(args.out, args.seed, threads=args.threads or 1)
    return 0


if __name__ == "__main__":
    run_main(main)
