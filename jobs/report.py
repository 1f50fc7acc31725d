"""Report on runs: `python -m jobs.report RUN_DIR [RUN_DIR ...] [--out DIR]`.

Each RUN_DIR is an evaluation run, a label run, an α-predictor artifact or a signals run
(jobs.score_signals: signals_summary.json), or holds several. Several artifacts (say an
sklearn and an MLP one, student-only and two-model features) compare side by side; a
section whose kind of run is not given says so. Writes report.html (self-contained),
report.md, plots/*.png and each plot's data as data/*.csv into RUN_DIR/report (the first
run's, when several runs are compared side by side), or into --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import output_path, run_main
from pipeline.errors import UserError
from pipeline.report.page import claim_report_dir, write_report
from pipeline.report.runs import load_run, unique_names
from pipeline.store.parts import filesystem


def default_out(first_run: str) -> str:
    fs, root = filesystem(first_run)
    if fs.type_name != "local":
        raise UserError(f"{first_run} is not a local directory: pass --out for the report")
    return f"{root.rstrip('/')}/report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", type=output_path, help="report directory (default: RUN_DIR/report of the first run)")
    args = parser.parse_args(argv)
    if args.out:  # a folder that is not the report's, or one it cannot write, is refused before any run is read
        claim_report_dir(Path(args.out))
    runs = [load_run(path, name) for path, name in zip(args.runs, unique_names(args.runs))]
    out = write_report(runs, args.out or default_out(args.runs[0]))  # claimed (again) before the report is built
    print(f"report: {out}/report.html  {out}/report.md  ({len(list((out / 'plots').iterdir()))} plots)")
    return 0


if __name__ == "__main__":
    run_main(main)
