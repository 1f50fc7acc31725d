"""Training an α-predictor on label datasets, with held-out decoding metrics."""
from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import KFold

from pipeline.errors import UserError
from pipeline.store.manifest import code_version, package_versions
from pipeline.store.parts import read_table
from predictor.artifact import Predictor
from predictor.decision import calibrate_entropy_gate, choose_alpha_index, decoding_metrics, heldout_outcomes
from predictor.features import FEATURE_SETS, FeatureSpec, feature_matrix
from predictor.models import MODELS

LABEL_COLUMNS = ["example_id", "student", "n_tokens", "alpha_grid", "correct", "features", "feature_layers", "feature_pool"]
N_GRID_COLUMNS = ["n_grid", "correct_per_n"]  # labels of an N grid (absent from older label datasets)
MIN_EXAMPLES = 100  # fewer: a warning, held-out metrics are noise
STAT_COLUMNS = sorted({s for stats in FEATURE_SETS.values() for s in stats})


@dataclass(frozen=True)
class TrainSettings:
    model: str = "sklearn_logreg"
    params: dict = field(default_factory=dict)
    folds: int = 5
    seed: int = 0
    features: str = "student"  # feature set: student | two_model (predictor/features.py)
    # α = 0 (no teacher call) is kept unless another α is predicted right more often by more
    # than this: where every α is (nearly) as good, asking the teacher buys nothing
    decision_margin: float = 0.05
    # which N's labels to train on, for label datasets of an N grid; default: their n_tokens
    n_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown predictor model '{self.model}' (known: {', '.join(MODELS)})")
        if self.features not in FEATURE_SETS:
            raise UserError(f"unknown feature set '{self.features}' (known: {', '.join(FEATURE_SETS)})")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise UserError(f"folds must be an integer ≥ 2, got {self.folds!r}")
        margin = self.decision_margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise UserError(f"decision_margin must be a number in [0, 1), got {margin!r}")
        n = self.n_tokens
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise UserError(f"n_tokens must be an integer ≥ 1, got {n!r}")


def labels_for_n(table: pa.Table, n: int, path: str) -> pa.Table:
    """The rows with N = n's labels in the single-N columns (`correct`, `n_tokens`), read off
    the per-N columns of a label dataset of an N grid."""
    if "n_grid" not in table.column_names:
        held = sorted(set(table.column("n_tokens").to_pylist()))
        if held != [n]:
            raise UserError(f"{path} holds labels for N = {held} only, not N = {n}: relabel with labels.n_grid including {n}")
        return table
    grids, per_n = table.column("n_grid").to_pylist(), table.column("correct_per_n").to_pylist()
    missing = sorted({tuple(g) for g in grids if n not in g})
    if missing:
        raise UserError(f"{path} has no labels for N = {n} (its n_grid: {[list(g) for g in missing][0]})")
    correct = pa.array([rows[grid.index(n)] for grid, rows in zip(grids, per_n)], type=pa.list_(pa.bool_()))
    table = table.set_column(table.schema.get_field_index("correct"), "correct", correct)
    return table.set_column(table.schema.get_field_index("n_tokens"), "n_tokens", pa.array([n] * table.num_rows, pa.int64()))


def read_labels(paths: list[str], n_tokens: int | None = None) -> pa.Table:
    """Union of label datasets; they must agree on grid, N, student and feature layout.
    `n_tokens` picks that N's labels out of datasets labelled over an N grid."""
    tables = []
    for path in paths:
        try:
            present = set(pq.ParquetDataset(path).schema.names)  # labels of older versions lack some statistics
        except FileNotFoundError:
            raise UserError(f"cannot read label dataset {path}: not found") from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(f"cannot read label dataset {path}: {str(exc).splitlines()[0]}") from None
        missing = [c for c in LABEL_COLUMNS if c not in present]
        if missing:
            raise UserError(f"{path} is not a label dataset of jobs.label_alpha (no column(s) {missing})")
        table = read_table(path, LABEL_COLUMNS + [c for c in STAT_COLUMNS + N_GRID_COLUMNS if c in present])
        if n_tokens is not None:
            table = labels_for_n(table, n_tokens, path)
        tables.append(table.drop_columns([c for c in N_GRID_COLUMNS if c in table.column_names]))
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    if table.num_rows == 0:
        raise UserError(f"label dataset is empty: {', '.join(paths)}")
    for column in ("student", "n_tokens", "feature_pool"):
        values = set(table.column(column).to_pylist())
        if len(values) > 1:
            raise UserError(f"label datasets disagree on {column}: {sorted(map(str, values))}")
    grids = {tuple(g) for g in table.column("alpha_grid").to_pylist()}
    if len(grids) > 1:
        raise UserError(f"label datasets use different α grids: {sorted(grids)}")
    ids = table.column("example_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise UserError("label datasets overlap: the same example_id appears more than once")
    return table


def label_fingerprint(table: pa.Table) -> str:
    ids = table.column("example_id").to_pylist()
    correct = table.column("correct").to_pylist()
    payload = "\n".join(f"{i}:{''.join('1' if c else '0' for c in row)}" for i, row in sorted(zip(ids, correct)))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cross_validate(X, Y, grid, settings: TrainSettings, example_ids: list[str], init=None) -> pd.DataFrame:
    """Held-out outcomes over k folds by example: one row per example, from the fold
    that held it out (see :func:`heldout_outcomes`)."""
    zero = grid.index(0.0) if 0.0 in grid else None
    parts = []
    folds = KFold(n_splits=min(settings.folds, len(X)), shuffle=True, random_state=settings.seed)
    for fold, (train, test) in enumerate(folds.split(X)):
        model = MODELS[settings.model](**settings.params).fit(X[train], Y[train], init)
        chosen = choose_alpha_index(model.predict_proba(X[test]), zero, settings.decision_margin)
        part = heldout_outcomes(Y[test], chosen, Y[train], grid)
        part.insert(0, "fold", fold)
        part.insert(0, "example_id", [example_ids[i] for i in test])
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def train_predictor(table: pa.Table, settings: TrainSettings, label_paths: list[str], init: Predictor | None = None) -> Predictor:
    if settings.n_tokens is not None:  # the artifact records this N and decodes with it
        table = labels_for_n(table, settings.n_tokens, ", ".join(label_paths))
    spec = FeatureSpec.of_labels(table, settings.features)
    if init is not None:
        init.feature_spec.check_matches(spec, "these labels")
    grid = list(table.column("alpha_grid")[0].as_py())
    if 0.0 not in grid:
        raise UserError("the α grid must contain 0.0 (the student alone) to train a predictor")
    if table.num_rows < MIN_EXAMPLES:
        warnings.warn(f"training an α-predictor on {table.num_rows} examples (< {MIN_EXAMPLES}): its held-out "
                      "metrics will be noisy; label more examples", UserWarning, stacklevel=2)
    X = feature_matrix(table, spec)
    Y = np.asarray(table.column("correct").to_pylist(), dtype=bool)
    init_model = init.model if init is not None and init.meta["model_kind"] == settings.model else None
    heldout = cross_validate(X, Y, grid, settings, table.column("example_id").to_pylist(), init_model)
    metrics = {**decoding_metrics(heldout), "folds": int(heldout["fold"].nunique())}
    # a two-model predictor needs the teacher's first distribution for every example
    metrics["teacher_call_share"] = 1.0 if spec.needs_teacher else 1.0 - metrics["no_teacher_share"]
    model = MODELS[settings.model](**settings.params).fit(X, Y, init_model)
    entropy = table.column("student_entropy").to_numpy()
    meta = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_kind": settings.model,
        "model_params": model.params(),
        "alpha_grid": grid,
        "n_tokens": int(table.column("n_tokens")[0].as_py()),
        "feature_set": settings.features,
        "feature_spec": spec.to_dict(),
        "decision_margin": settings.decision_margin,
        "label_datasets": label_paths,
        "label_fingerprint": label_fingerprint(table),
        "n_examples": table.num_rows,
        "metrics": metrics,
        "entropy_gate": calibrate_entropy_gate(entropy, Y, grid),
        "versions": package_versions(),
        **code_version(),
        "init_from": {"label_fingerprint": init.meta["label_fingerprint"], "created_at": init.meta["created_at"]} if init else None,
    }
    return Predictor(model, meta, heldout)


def format_metrics(meta: dict) -> str:
    m, gate = meta["metrics"], meta["entropy_gate"]
    rows = [
        ("student (α=0)", m.get("student_acc")),
        ("teacher token (α=1)", m.get("teacher_acc")),
        (f"best fixed α ({m['best_fixed_alpha']:g}, chosen on training folds)", m["best_fixed_alpha_acc"]),
        ("predicted α", m["predicted_alpha_acc"]),
        ("oracle (any α correct)", m["oracle_acc"]),
    ]
    lines = [f"held-out accuracy over {m['n']} examples ({m['folds']} folds, by example; N={meta['n_tokens']}; {meta.get('feature_set', 'student')} features):"]
    lines += [f"  {name:<52} {'n/a' if acc is None else f'{acc:.3f}'}" for name, acc in rows]
    lines.append(f"  no teacher call (predicted α = 0): {m['no_teacher_share']:.1%} of examples; "
                 f"teacher consulted at all: {m.get('teacher_call_share', 1 - m['no_teacher_share']):.1%}")
    lines.append(
        f"entropy gate calibrated on all labels: inject α={gate['alpha']:g} when entropy in "
        f"[{gate['lo']:.3f}, {gate['hi']:.3f}] (training accuracy {gate['accuracy']:.3f})"
    )
    return "\n".join(lines)
