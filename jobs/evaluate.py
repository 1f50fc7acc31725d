"""Evaluate decoding strategies on a benchmark: `python -m jobs.evaluate --config configs/demo.yaml --out runs/demo`.

Runs locally (a local Ray cluster is started) and unchanged under
`ray job submit --working-dir . -- python -m jobs.evaluate ...`.
"""
from __future__ import annotations

from pipeline.cli import config_job_parser, print_report_hint, run_main
from pipeline.config import load_config
from pipeline.tasks.evaluate import format_table, run_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = config_job_parser("python -m jobs.evaluate", __doc__)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    summary = run_evaluation(config, args.out)
    print(format_table(summary["strategies"] + summary["oracle"]))
    print(f"results: {args.out}/results  summary: {args.out}/summary.json")
    print_report_hint(args.out)
    return 0


if __name__ == "__main__":
    run_main(main)
