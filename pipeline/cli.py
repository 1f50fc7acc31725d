"""What every job entry point shares: argument helpers and one-line errors for expected mistakes."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

from pipeline.errors import Interrupted, JobFailed, UserError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML run configuration (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set dataset.limit=50 --set ray.num_students=2",
    )


def output_path(value: str) -> str:
    """--out as argparse reads it: an empty value would mean the working directory (a
    UserError passes through argparse to `run_main`'s one line)."""
    if not value.strip():
        raise UserError("--out is empty: name the output directory")
    return value


def config_job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments every config-driven job takes: --config, --set overrides, --out."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", required=True, type=output_path, help="output directory or pyarrow filesystem URI")
    return parser


def print_report_hint(*run_dirs: str) -> None:
    """Every job ends by naming the command that turns its output into pictures."""
    print(f"report: python -m jobs.report {' '.join(run_dirs)}")


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a job's main; a UserError becomes one line on stderr and exit status 2, a
    JobFailed one line and exit status 1, Ctrl-C or SIGTERM one line and exit status 130
    (what has been written stays, and the same command resumes)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # a scheduler's stop: the same clean end as Ctrl-C
    try:
        code = main(argv)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"error: {str(exc) or 'interrupted'}; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
