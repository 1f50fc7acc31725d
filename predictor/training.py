"""Training an α-predictor on label datasets, with held-out decoding metrics."""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pydantic import Field

from pipeline.config.schema import Bool, Finite, Int, PosInt, Str, doc, section
from pipeline.errors import UserError
from pipeline.stats.intervals import Estimate
from pipeline.store.manifest import code_version, package_versions
from pipeline.store.parts import read_table
from predictor.artifact import Predictor
from predictor.crossval import CrossValidation, nested_cross_validation, select_per_fold
from predictor.budget_calibration import POSITION_COLUMNS, calibrate_budget
from predictor.decision import best_fixed_index, calibrate_entropy_gate, choose_threshold, decoding_metrics, teacher_tokens
from predictor.features import FEATURE_SETS, STAT_COLUMNS, FeatureSpec, feature_matrix
from predictor.models import MODELS

LABEL_COLUMNS = ["example_id", "student", "n_tokens", "alpha_grid", "correct", "features", "feature_layers", "feature_pool"]
N_GRID_COLUMNS = ["n_grid", "correct_per_n", "first_tokens_per_n"]  # labels of an N grid (absent from older label datasets)
MIN_EXAMPLES = 100  # fewer: a warning, held-out metrics are noise (with --select: refused)


SELECT_FEATURES = ("stats", "hidden", "both")
SELECT_MODELS = ("sklearn_logreg", "sklearn_hgb", "torch_mlp")


@section
class TrainSettings:
    where: ClassVar[str] = "predictor config"
    model: Annotated[Str, doc("the predictor model (predictor/models.py)")] = "sklearn_logreg"
    params: Annotated[dict, doc("the model's parameters")] = field(default_factory=dict)
    folds: Annotated[Int, Field(ge=2), doc("outer folds: the held-out rows every metric is measured on")] = 5
    inner_folds: Annotated[Int, Field(ge=2), doc("inside each outer training split: the threshold (and, with "
                                                 "select, the combination)")] = 3
    seed: Annotated[Int, doc("seed of the folds and the models")] = 0
    features: Annotated[Str, doc("feature set (predictor/features.py)")] = "student"
    teacher_token_cost: Annotated[Finite, Field(ge=0, lt=1),
                                  doc("accuracy one teacher-decided token per example is worth giving up (0: free); "
                                      "the default α, the threshold and every choice are made net of it")] = 0.0
    policy: Annotated[Literal["auto", "learned", "fixed"],
                      doc("auto: the learned policy only where it beats the best fixed α on held-out rows")] = "auto"
    select: Annotated[Bool, doc("pick feature set and model by inner cross-validation among the combinations")] = False
    select_features: Annotated[tuple[Str, ...], doc("feature sets select compares")] = SELECT_FEATURES
    select_models: Annotated[tuple[Str, ...], doc("models select compares")] = SELECT_MODELS
    n_tokens: Annotated[PosInt | None, doc("which N's labels to train on (label datasets of an N grid); "
                                           "default: their n_tokens")] = None

    def __post_init__(self) -> None:
        for model in (self.model, *self.select_models):
            if model not in MODELS:
                raise UserError(f"unknown predictor model '{model}' (known: {', '.join(MODELS)})")
        for features in (self.features, *self.select_features):
            if features not in FEATURE_SETS:
                raise UserError(f"unknown feature set '{features}' (known: {', '.join(FEATURE_SETS)})")

    def candidates(self) -> list[tuple[str, str]]:
        """(feature set, model) combinations to compare: the configured one, or the selection grid."""
        if not self.select:
            return [(self.features, self.model)]
        return [(f, m) for f in self.select_features for m in self.select_models]

    def model_factory(self, model: str):
        params = self.params if model == self.model else {}
        return lambda: MODELS[model](**params)


def labels_for_n(table: pa.Table, n: int, path: str) -> pa.Table:
    """The rows with N = n's labels in the single-N columns (`correct`, `n_tokens`), read off
    the per-N columns of a label dataset of an N grid."""
    if "n_grid" not in table.column_names:
        held = sorted(set(table.column("n_tokens").to_pylist()))
        if held != [n]:
            raise UserError(f"{path} holds labels for N = {held} only, not N = {n}: relabel with labels.n_grid including {n}")
        return table
    grids = table.column("n_grid").to_pylist()
    missing = sorted({tuple(g) for g in grids if n not in g})
    if missing:
        raise UserError(f"{path} has no labels for N = {n} (its n_grid: {[list(g) for g in missing][0]})")
    # the single-N columns that have a per-N twin: correct, and first_tokens where read
    for name in [c for c in ("correct", "first_tokens") if c in table.column_names and f"{c}_per_n" in table.column_names]:
        at_n = [rows[grid.index(n)] for grid, rows in zip(grids, table.column(f"{name}_per_n").to_pylist())]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(at_n, type=table.schema.field(name).type))
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
        table = read_table(path, LABEL_COLUMNS + [c for c in STAT_COLUMNS + N_GRID_COLUMNS + POSITION_COLUMNS if c in present])
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


def check_trainable(table: pa.Table, settings: TrainSettings) -> None:
    """Refuse, before any fitting, labels the cross-validation cannot use: fewer rows than its
    folds need (they would silently shrink to leave-one-out: minutes, and numbers of no use), and
    non-finite features or statistics (a model fitted on NaN fails or predicts nonsense)."""
    n, needed = table.num_rows, settings.folds * settings.inner_folds  # every inner fold of every outer split non-empty
    if n < needed:
        raise UserError(f"{n} labelled examples are too few for {settings.folds} outer × {settings.inner_folds} inner folds: "
                        f"they need at least {needed}; label more examples or lower --folds / --inner-folds")
    if settings.select and n < MIN_EXAMPLES:
        raise UserError(f"--select compares {len(settings.candidates())} feature set × model combinations by inner "
                        f"cross-validation: it needs at least {MIN_EXAMPLES} labelled examples, got {n}; label more, or "
                        "train one combination without --select")
    ids = table.column("example_id").to_pylist()
    for name in ["features", *[c for c in STAT_COLUMNS if c in table.column_names]]:
        bad = ~_finite_rows(table.column(name).combine_chunks())
        if bad.any():
            raise UserError(f"label dataset has non-finite values (NaN, ±inf or missing) in '{name}' of {int(bad.sum())} "
                            f"example(s) (first: {ids[int(np.flatnonzero(bad)[0])]}): relabel them or leave them out")


def _finite_rows(column: pa.Array) -> np.ndarray:
    """Per row: every value of a number or list-of-numbers column finite (a null is not)."""
    ok = ~np.asarray(column.is_null(), dtype=bool)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        values = pc.cast(pc.list_flatten(column), pa.float64())
        bad = ~np.asarray(pc.fill_null(pc.is_finite(values), False), dtype=bool)
        ok[np.asarray(pc.list_parent_indices(column))[bad]] = False
    else:
        ok &= np.asarray(pc.fill_null(pc.is_finite(pc.cast(column, pa.float64())), False), dtype=bool)
    return ok


def check_unseen_by(table: pa.Table, init: Predictor) -> None:
    """A warm start's model has seen the rows it was trained on: where they are among these
    labels, the outer folds would score it on its own training rows, so they are refused."""
    seen = init.label_ids()
    ids = table.column("example_id").to_pylist()
    overlap = len(seen.intersection(ids))
    if overlap:
        raise UserError(f"--init-from: {overlap} of these {len(ids)} labelled examples are among the {len(seen)} the "
                        "warm-start artifact was trained on, so held-out metrics would score its model on rows it has seen: "
                        "train on labels it did not see")


@dataclass
class CandidateResult:
    features: str
    model: str
    spec: FeatureSpec
    X: np.ndarray
    cv: CrossValidation

    def row(self, cost: float, folds: list[int], cv_utility: float) -> dict:
        """The comparison table's row: this combination's own held-out accuracy and its difference
        to the best fixed α, the outer folds that chose it, and its utility on all rows."""
        m = decoding_metrics(self.cv.heldout, cost)
        return {"features": self.features, "model": self.model, "inner_cv_utility": self.cv.inner_score,
                "inner_cv_utility_per_fold": self.cv.inner_scores, "chosen_in_folds": folds, "cv_utility": cv_utility,
                "heldout_accuracy": m["intervals"]["predicted_alpha_acc"],
                "vs_best_fixed": m["differences"]["predicted_vs_best_fixed"],
                "teacher_call_share": 1.0 if self.spec.needs_teacher else 1.0 - m["no_teacher_share"]}


def evaluate_candidates(table: pa.Table, Y: np.ndarray, grid: list[float], tokens: np.ndarray, settings: TrainSettings,
                        init: Predictor | None) -> list[CandidateResult]:
    ids = table.column("example_id").to_pylist()
    results = []
    candidates = settings.candidates()
    for i, (features, model) in enumerate(candidates):
        spec = FeatureSpec.of_labels(table, features)
        if init is not None:
            init.feature_spec.check_matches(spec, "these labels")
        init_model = init.model if init is not None and init.meta["model_kind"] == model else None
        X = feature_matrix(table, spec)
        if len(candidates) > 1:
            print(f"  [{i + 1}/{len(candidates)}] {features} features, {model}: nested cross-validation", flush=True)
        cv = nested_cross_validation(settings.model_factory(model), X, Y, grid, tokens, settings.teacher_token_cost,
                                     settings.folds, settings.inner_folds, settings.seed, ids, init_model)
        results.append(CandidateResult(features, model, spec, X, cv))
    return results


def decide_policy(metrics: dict, threshold: float | None, default_alpha: float, forced: str) -> dict:
    """Learned or fixed, and why: the learned policy is used only where its held-out
    difference to the best fixed α (net of teacher cost, when priced) is above zero."""
    diffs = metrics["differences"]
    diff = Estimate.from_dict(diffs.get("predicted_vs_best_fixed_net_of_cost", diffs["predicted_vs_best_fixed"]))
    measured = (f"learned − best fixed α on held-out rows: {diff.format(signed=True)}"
                f"{'' if diff.excludes_zero else ', within noise'}")
    if forced != "auto":
        kind, reason = forced, f"forced by policy: {forced} ({measured})"
    elif threshold is None:
        kind, reason = "fixed", f"cross-validation found no threshold at which moving off the default pays ({measured})"
    elif diff.value > 0:
        kind, reason = "learned", f"the learned policy beats the best fixed α ({measured})"
    else:
        kind, reason = "fixed", f"the learned policy does not beat the best fixed α ({measured})"
    return {"kind": kind, "reason": reason, "default_alpha": default_alpha, "threshold": threshold}


def train_predictor(table: pa.Table, settings: TrainSettings, label_paths: list[str], init: Predictor | None = None) -> Predictor:
    if settings.n_tokens is not None:  # the artifact records this N and decodes with it
        table = labels_for_n(table, settings.n_tokens, ", ".join(label_paths))
    grid = list(table.column("alpha_grid")[0].as_py())
    if 0.0 not in grid:
        raise UserError("the α grid must contain 0.0 (the student alone) to train a predictor")
    check_trainable(table, settings)
    if init is not None:
        check_unseen_by(table, init)
    if table.num_rows < MIN_EXAMPLES:
        warnings.warn(f"training an α-predictor on {table.num_rows} examples (< {MIN_EXAMPLES}): its held-out "
                      "metrics will be noisy; label more examples", UserWarning, stacklevel=2)
    n_tokens = int(table.column("n_tokens")[0].as_py())
    tokens = teacher_tokens(grid, n_tokens)
    cost = settings.teacher_token_cost
    Y = np.asarray(table.column("correct").to_pylist(), dtype=bool)
    results = evaluate_candidates(table, Y, grid, tokens, settings, init)
    # nested: each outer fold's combination chosen on its own inner scores, its held-out rows
    # decided by that combination's fold model (one candidate: that one everywhere)
    picks = select_per_fold([r.cv for r in results])
    parts = [results[c].cv.parts[fold] for fold, c in enumerate(picks)]
    if len(results) > 1:
        parts = [p.assign(features=results[c].features, model=results[c].model) for p, c in zip(parts, picks)]
    heldout = pd.concat(parts, ignore_index=True)
    metrics = {**decoding_metrics(heldout, cost), "folds": len(picks), "inner_folds": settings.inner_folds}
    # a two-model predictor needs the teacher's first distribution for every example
    needs_teacher = np.concatenate([np.full(len(p), results[c].spec.needs_teacher) for p, c in zip(parts, picks)])
    metrics["teacher_call_share"] = float(np.mean(needs_teacher | (heldout["chosen_alpha"].to_numpy() != 0.0)))
    # the artifact's own choices, made on every labelled row as each outer fold made them on its
    # training rows: the combination and the threshold on the outer folds' held-out predictions
    # (first of equal combinations: the simplest listed), and the default
    scored = [choose_threshold(r.cv.outer, tokens, cost) for r in results]
    best = max(range(len(results)), key=lambda i: scored[i][1])
    chosen, threshold = results[best], scored[best][0]
    default = best_fixed_index(Y, tokens, cost)
    policy = decide_policy(metrics, threshold, float(grid[default]), settings.policy)
    metrics["chosen_policy_acc"] = metrics["intervals"]["predicted_alpha_acc" if policy["kind"] == "learned" else "best_fixed_alpha_acc"]
    init_model = init.model if init is not None and init.meta["model_kind"] == chosen.model else None
    model = settings.model_factory(chosen.model)().fit(chosen.X, Y, init_model)
    entropy = table.column("student_entropy").to_numpy()
    meta = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_kind": chosen.model,
        "model_params": model.params(),
        "alpha_grid": grid,
        "n_tokens": n_tokens,
        "feature_set": chosen.features,
        "feature_spec": chosen.spec.to_dict(),
        "teacher_token_cost": cost,
        "teacher_tokens": tokens.tolist(),
        "policy": {**policy, "default_alpha_train_accuracy": float(Y[:, default].mean())},
        "selection": [r.row(cost, [f for f, c in enumerate(picks) if c == i], scored[i][1]) for i, r in enumerate(results)]
        if len(results) > 1 else None,
        "selection_per_fold": [{"fold": fold, "features": results[c].features, "model": results[c].model,
                                "inner_cv_utility": results[c].cv.inner_scores[fold]} for fold, c in enumerate(picks)]
        if len(results) > 1 else None,
        "label_datasets": label_paths,
        "label_fingerprint": label_fingerprint(table),
        "n_examples": table.num_rows,
        "metrics": metrics,
        "entropy_gate": calibrate_entropy_gate(entropy, Y, grid),
        "budget": calibrate_budget(table, first_alphas(table, heldout, policy), n_tokens, cost),
        "versions": package_versions(),
        **code_version(),
        "init_from": {"label_fingerprint": init.meta["label_fingerprint"], "created_at": init.meta["created_at"]} if init else None,
    }
    return Predictor(model, meta, heldout)


def first_alphas(table: pa.Table, heldout, policy: dict) -> list[float]:
    """Per label row, the α the artifact gives its first tokens: the held-out prediction of the
    fold that held the row out (learned policy), or the fixed policy's α."""
    if policy["kind"] != "learned":
        return [float(policy["default_alpha"])] * table.num_rows
    chosen = dict(zip(heldout["example_id"], heldout["chosen_alpha"]))
    return [float(chosen[i]) for i in table.column("example_id").to_pylist()]


def format_metrics(meta: dict) -> str:
    m, gate, policy = meta["metrics"], meta["entropy_gate"], meta["policy"]
    ci = m["intervals"]
    per_fold = Counter(m["best_fixed_alpha_per_fold"])
    fold_choice = ", ".join(f"{a:g} in {k}" for a, k in sorted(per_fold.items(), key=lambda x: -x[1]))
    rows = [
        ("student (α=0)", ci.get("student_acc")),
        ("teacher token (α=1)", ci.get("teacher_acc")),
        (f"best fixed α (chosen on each training fold: {fold_choice})", ci["best_fixed_alpha_acc"]),
        ("learned policy (threshold by inner cross-validation)", ci["predicted_alpha_acc"]),
        ("oracle (any α correct)", ci["oracle_acc"]),
    ]
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"held-out accuracy, 95 % interval, over {m['n']} examples ({m['folds']} outer × {m.get('inner_folds', '?')} inner "
             f"folds, by example; N={meta['n_tokens']}; {meta['feature_set']} features, {meta['model_kind']}):"]
    lines += [f"  {name:<{width}} {'n/a' if est is None else Estimate.from_dict(est).format()}" for name, est in rows]
    lines.append("paired differences on the same examples (bootstrap, 95 %):")
    for name, label in (("predicted_vs_best_fixed", "learned − best fixed α"), ("predicted_vs_student", "learned − student"),
                        ("best_fixed_vs_student", "best fixed α − student"), ("oracle_vs_best_fixed", "oracle − best fixed α"),
                        ("predicted_vs_best_fixed_net_of_cost", "learned − best fixed α, net of teacher-token cost")):
        if name in m["differences"]:
            lines.append(f"  {label:<{width}} {Estimate.from_dict(m['differences'][name]).format(signed=True)}")
    lines.append(f"  no teacher call (chosen α = 0): {m['no_teacher_share']:.1%} of examples; "
                 f"teacher consulted at all: {m['teacher_call_share']:.1%}")
    if meta.get("selection"):
        lines.append("feature sets × models (each alone: outer held-out accuracy; folds: the outer folds whose inner "
                     "cross-validation chose it, and the held-out numbers above pool those choices; *: the artifact's, "
                     "chosen on all labels):")
        for r in meta["selection"]:
            mark = "*" if (r["features"], r["model"]) == (meta["feature_set"], meta["model_kind"]) else " "
            folds = ",".join(map(str, r.get("chosen_in_folds", []))) or "-"
            lines.append(f"  {mark} {r['features']:<10} {r['model']:<15} inner {r['inner_cv_utility']:.3f}  folds {folds:<9} "
                         f"held-out {Estimate.from_dict(r['heldout_accuracy']).format()}  vs best fixed "
                         f"{Estimate.from_dict(r['vs_best_fixed']).format(signed=True)}  teacher {r['teacher_call_share']:.0%}")
    threshold = "never" if policy["threshold"] is None else f"{policy['threshold']:g}"
    lines.append(f"policy: {policy['kind']} (default α = {policy['default_alpha']:g}, best on all labels; move off it where the "
                 f"predicted gain passes {threshold}): {policy['reason']}")
    lines.append(
        f"entropy gate calibrated on all labels: inject α={gate['alpha']:g} when entropy in "
        f"[{gate['lo']:.3f}, {gate['hi']:.3f}] (training accuracy {gate['accuracy']:.3f})"
    )
    if budget := meta.get("budget"):
        side = ">" if budget["signal"] == "entropy" else "<"
        lines.append(
            f"budget calibrated on the position labels: after the first {meta['n_tokens']} token(s) (this artifact's α), "
            f"α={budget['alpha']:g} where the student's {budget['signal']} {side} {budget['threshold']:.3f}, K={budget['k']}: "
            f"accuracy on these labels {budget['accuracy']:.3f} [{budget['accuracy_lo']:.3f}, {budget['accuracy_hi']:.3f}] at "
            f"{budget['teacher_tokens_per_example']:.2f} teacher tokens/example ({budget['unlabelled_share']:.0%} of its "
            "consultations at unlabelled steps, assumed to keep the token)")
    return "\n".join(lines)
