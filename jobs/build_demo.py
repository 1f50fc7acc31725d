"""Rebuild the built-in demo world (data, tokenizer, student, teacher) from a seed.

    python -m jobs.build_demo [--out DIR] [--seed S] [--threads T]

Defaults rebuild the shipped `demo_world/` with seed 0 (what produced the shipped files).
Training runs on CPU with a fixed thread count; the same seed and thread count give the
same data and models.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from pipeline.demo.world import DEFAULT_SEED, build_demo_world, demo_paths

    ap = argparse.ArgumentParser(prog="python -m jobs.build_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output directory (default: {demo_paths().root})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="world seed (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per model; teacher and student train at once (default: %(default)s)")
    args = ap.parse_args(argv)
    build_demo_world(args.out, args.seed, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
