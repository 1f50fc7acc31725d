"""Export distillation data: `python -m jobs.export_distill --input runs/demo/with_signals --config configs/demo.yaml --out runs/demo/distill`.

Writes a Parquet training set (prompt, target completion, source, per-token origin
mask, signals, weight; rule in pipeline/tasks/distill.py) readable with
`datasets.load_dataset("parquet", data_files="OUT/*.parquet")`.
"""
from __future__ import annotations

from collections import Counter

from pipeline.cli import config_job_parser, run_main
from pipeline.config import load_config
from pipeline.store.schemas import DISTILL_SCHEMA
from pipeline.tasks.distill import distill_rows
from pipeline.store.ownership import claim_output
from pipeline.store.parts import read_table, write_part


def main(argv: list[str] | None = None) -> int:
    parser = config_job_parser("python -m jobs.export_distill", __doc__)
    parser.add_argument("--input", required=True, help="the with_signals dataset written by jobs.score_signals")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides, needs=())
    rows = distill_rows(read_table(args.input), config.export)
    fs, root = claim_output(args.out, "export_distill")
    write_part(fs, root, "part-000000.parquet", rows, DISTILL_SCHEMA)
    kept = sum(r["weight"] > 0 for r in rows)
    print(f"{len(rows)} rows ({dict(Counter(r['source'] for r in rows))}), {kept} with weight > 0 -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
