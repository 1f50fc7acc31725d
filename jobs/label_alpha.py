"""Generate α-labels: `python -m jobs.label_alpha --config configs/demo.yaml --out runs/demo`.

For every example, decodes every α of the grid, for every N of `labels.n_grid` (config
section `labels`), with one prefix tree grown to max(N), and writes `OUT/labels/`
(Parquet), `OUT/label_summary.json` and `OUT/labels_manifest.json`. Runs locally and
under `ray job submit`.
"""
from __future__ import annotations

from pipeline.cli import config_job_parser, print_report_hint, run_main
from pipeline.config import MODEL_AND_DATA, load_config
from pipeline.tasks.label import format_label_summary, run_labels


def main(argv: list[str] | None = None) -> int:
    parser = config_job_parser("python -m jobs.label_alpha", __doc__)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides, needs=MODEL_AND_DATA)
    summary = run_labels(config, args.out)
    print(format_label_summary(summary))
    print(f"labels: {args.out}/labels  summary: {args.out}/label_summary.json")
    print_report_hint(args.out)
    return 0


if __name__ == "__main__":
    run_main(main)
