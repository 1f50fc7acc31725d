"""What a report reads from one run directory: whichever of the project's outputs it holds.

A run directory is any of
  * an evaluation run (``jobs.evaluate``): ``results/`` + ``manifest.json``;
  * a label run (``jobs.label_alpha``): ``labels/`` + ``labels_manifest.json``;
  * an α-predictor artifact (``jobs.train_predictor``): ``metadata.json`` + ``heldout.parquet``;
  * a signals run (``jobs.score_signals``): ``signals_summary.json`` (+ ``signals/``);
or several of them in one directory.  Local paths and pyarrow filesystem URIs both work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd
from pyarrow import fs as pafs

from pipeline.errors import UserError
from pipeline.store.parts import filesystem, join, read_dataset, read_json
from predictor.files import HELDOUT_FILE

# per-example columns a report needs; hidden features and token ids stay on disk
# (`group` is absent from runs written before datasets had a group_field: read as null)
RESULT_COLUMNS = ["example_id", "group", "strategy", "strategy_name", "alpha", "n_tokens", "params",
                  "correct", "teacher_tokens", "teacher_tokens_processed", "teacher_calls", "latency_s", "student_first_entropy"]
LABEL_COLUMNS = ["example_id", "group", "n_tokens", "alpha_grid", "correct", "student_entropy",
                 "interval_lo", "interval_hi", "interval_correct", "n_grid", "correct_per_n"]
# absent from runs written before datasets had a group_field, labels had an N grid, or results
# counted teacher calls: read as null
OPTIONAL_COLUMNS = {"group", "n_grid", "correct_per_n", "teacher_calls"}
MANIFESTS = {"evaluate": "manifest.json", "label_alpha": "labels_manifest.json",
             "score_signals": "signals_manifest.json"}
SIGNALS_SUMMARY = "signals_summary.json"


@dataclass
class Run:
    name: str
    path: str
    results: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None
    heldout: pd.DataFrame | None = None
    predictor: dict | None = None  # the artifact's metadata.json
    signals: dict | None = None  # signals_summary.json of jobs.score_signals
    manifests: dict[str, dict] = field(default_factory=dict)  # job -> manifest


def _has_dir(fs, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _read_columns(fs, directory: str, columns: list[str]) -> pd.DataFrame:
    table = read_dataset(fs, directory)
    present = [c for c in columns if c in table.column_names or c not in OPTIONAL_COLUMNS]
    df = table.select(present).to_pandas()
    for column in columns:
        if column not in df:
            df[column] = None
    if "group" in df:  # one spelling of "no group" for every reader of these frames
        df["group"] = df["group"].astype(object).where(df["group"].notna(), None)
    return df[columns]


def _json_file(fs, root: str, file: str, path: str) -> object:
    """A JSON file of the run (None when absent); one line naming it when it is not JSON text."""
    try:
        return read_json(fs, join(root, file))
    except ValueError as exc:  # not JSON, or not UTF-8: a file cut short or edited by hand
        raise UserError(f"{path}: {file} is not JSON ({str(exc).splitlines()[0]}): restore it, or rerun the job "
                        "that wrote it") from None


def _json_object(fs, root: str, file: str, path: str) -> dict | None:
    """A manifest or summary the report reads by key: a JSON object, or one line naming it."""
    value = _json_file(fs, root, file, path)
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path}: {file} is not a JSON object: restore it, or rerun the job that wrote it")
    return value


def load_run(path: str, name: str | None = None) -> Run:
    """Everything reportable under `path`; one clear error when there is nothing."""
    fs, root = filesystem(path)
    if not _has_dir(fs, root):
        raise UserError(f"run directory not found: {path}")
    run = Run(name=name or PurePosixPath(root.rstrip("/")).name or root, path=path)
    for job, file in MANIFESTS.items():
        manifest = _json_object(fs, root, file, path)
        if manifest is not None:
            run.manifests[job] = manifest
    if _has_dir(fs, join(root, "results")):
        run.results = _read_columns(fs, join(root, "results"), RESULT_COLUMNS)
    if _has_dir(fs, join(root, "labels")):
        run.labels = _read_columns(fs, join(root, "labels"), LABEL_COLUMNS)
    meta = _json_file(fs, root, "metadata.json", path)
    if isinstance(meta, dict) and "alpha_grid" in meta and "metrics" in meta:
        run.predictor = meta
        if fs.get_file_info(join(root, HELDOUT_FILE)).type == pafs.FileType.File:
            with fs.open_input_file(join(root, HELDOUT_FILE)) as fh:
                run.heldout = pd.read_parquet(fh)
    run.signals = _json_object(fs, root, SIGNALS_SUMMARY, path)
    if run.results is None and run.labels is None and run.predictor is None and run.signals is None:
        raise UserError(f"{path}: nothing to report (no results/, labels/, {SIGNALS_SUMMARY} or α-predictor metadata.json)")
    return run


def unique_names(paths: list[str]) -> list[str]:
    """Short names for the runs of one report: the directory name, or more of the path
    when two runs share it."""
    names = [PurePosixPath(p.rstrip("/")).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [p.rstrip("/") for p in paths]
