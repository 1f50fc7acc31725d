"""Teaching-assistant signals: `python -m jobs.score_signals --results runs/demo/results --config configs/demo.yaml --out runs/demo`.

For every example of a results or label dataset: student self-consistency (k seeded
samples at temperature T: majority answer and agreement) and a TA model's confidence
(mean and minimum token log-probability) in the student's and the teacher's greedy
outputs. Writes OUT/signals/, OUT/with_signals/ (the input joined by example_id) and
OUT/signals_summary.json (ROC AUC of each signal for correctness).
"""
from __future__ import annotations

import json

from pipeline.cli import config_job_parser, run_main
from pipeline.config import MODEL_AND_DATA, load_config
from pipeline.tasks.signals import run_signals


def main(argv: list[str] | None = None) -> int:
    parser = config_job_parser("python -m jobs.score_signals", __doc__)
    parser.add_argument("--results", required=True, help="results or label dataset to add signals to")
    args = parser.parse_args(argv)
    summary = run_signals(load_config(args.config, args.overrides, needs=MODEL_AND_DATA), args.results, args.out)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
