"""Peak memory of the evaluate job's driver, on the demo's train split: 20,000 problems vs 2,000.

    python -m speed.driver_memory [--small 2000] [--large 20000]

Each size runs `jobs.evaluate` (student strategy only, so the decode stays short) in a fresh
process whose own peak resident memory (`ru_maxrss` of that process alone: the Ray workers
are other processes) is printed. The driver holds the examples and the units, never the
results: it counts rows from the part files' footers. Prints driver_peak_rss_large_vs_small.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = """
import resource, runpy, sys
sys.argv = ["jobs.evaluate", *sys.argv[1:]]
try:
    runpy.run_module("jobs.evaluate", run_name="__main__")
finally:
    print("peak_rss_kib=%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""

OVERRIDES = ["dataset.source=demo_world/data/train.jsonl", "dataset.split=train", "strategies=[{name: student}]",
             "decoding.max_new_tokens=12", "decoding.batch_size=100"]


def driver_peak_mib(config: str, examples: int, out: Path) -> float:
    cmd = [sys.executable, "-c", DRIVER, "--config", config, "--out", str(out)]
    for override in [*OVERRIDES, f"dataset.limit={examples}"]:
        cmd += ["--set", override]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the job failed on {examples} examples:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = json.loads((out / "manifest.json").read_text())["dataset"]["n_examples"]
    assert rows == examples, (rows, examples)
    line = next(x for x in done.stderr.splitlines() if x.startswith("peak_rss_kib="))
    return int(line.split("=")[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = driver_peak_mib(args.config, args.small, Path(tmp) / "small")
        large = driver_peak_mib(args.config, args.large, Path(tmp) / "large")
    print(f"driver peak RSS: {small:.0f} MiB on {args.small:,} problems, {large:.0f} MiB on {args.large:,}")
    print(f"driver_peak_rss_large_vs_small={large / small:.2f}")


if __name__ == "__main__":
    main()
