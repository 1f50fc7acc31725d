"""The data behind every plot and table of a report, as DataFrames with a `run` column.

Each function reads only the runs' Parquet rows (and, for facts, gates and signal AUCs, their
manifests, the artifacts' metadata.json and signals_summary.json), so a report's numbers can be
checked against a direct pandas computation on the same files.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.report.runs import Run
from pipeline.store.schemas import TEACHER_COSTS as COSTS
from pipeline.stats.intervals import Estimate, accuracy, paired_difference, wilson_interval
from predictor.decision import best_fixed_index, decoding_metrics, teacher_tokens

N_BINS = 20


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


NO_GROUP = "(no group)"


def label_outcomes(labels: pd.DataFrame, every_n: bool = False) -> pd.DataFrame:
    """One row per (example, grid α): example_id, group, n_tokens, alpha, correct, student_entropy,
    for the labels' single N; `every_n`: one row per (example, N, grid α) of labels over an N grid."""
    cols = ["example_id", "group", "n_tokens", "alpha_grid", "correct", "student_entropy"]
    if every_n and "correct_per_n" in labels and len(labels) and labels["correct_per_n"].notna().all():
        per_n = labels.drop(columns=["n_tokens", "correct"]).rename(columns={"n_grid": "n_tokens", "correct_per_n": "correct"})
        labels = per_n[cols].explode(["n_tokens", "correct"])
    long = labels[cols].explode(["alpha_grid", "correct"]).rename(columns={"alpha_grid": "alpha"})
    return long.astype({"alpha": float, "correct": bool, "n_tokens": int})


def has_groups(runs: list[Run]) -> bool:
    """Whether any evaluation or label run names a group for its examples."""
    return any(df is not None and df["group"].notna().any() for run in runs for df in (run.results, run.labels))


def _group(df: pd.DataFrame) -> pd.Series:
    return df["group"].astype(object).where(df["group"].notna(), NO_GROUP)


def _accuracy(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Accuracy, its 95 % interval and count of the rows in `parts` per `keys`."""
    columns = [*keys, "accuracy", "accuracy_lo", "accuracy_hi", "n"]
    if not parts:
        return pd.DataFrame(columns=columns)
    rows = pd.concat([p[[*keys, "correct"]] for p in parts], ignore_index=True)
    out = rows.groupby(keys, sort=True)["correct"].agg(accuracy="mean", right="sum", n="size").reset_index()
    bounds = [wilson_interval(int(k), int(n)) for k, n in zip(out["right"], out["n"])]
    out["accuracy_lo"], out["accuracy_hi"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out[columns]


def _alpha_outcomes(runs: list[Run]) -> list[pd.DataFrame]:
    """Per run, the rows with an α: fixed_alpha rows of evaluations, every grid α of label runs."""
    parts = []
    for run in runs:
        if run.results is not None:
            fixed = run.results[run.results["strategy_name"] == "fixed_alpha"]
            parts.append(fixed.assign(run=run.name, source="evaluation", group=_group(fixed)))
        if run.labels is not None:  # every N of an N grid: one line per N
            long = label_outcomes(run.labels, every_n=True)
            parts.append(long.assign(run=run.name, source="labels", group=_group(long)))
    return parts


def accuracy_vs_alpha(runs: list[Run]) -> pd.DataFrame:
    """Accuracy per (run, source, N, α): fixed_alpha rows of evaluations, every grid α of label runs."""
    return _accuracy(_alpha_outcomes(runs), ["run", "source", "n_tokens", "alpha"])


def accuracy_vs_alpha_by_group(runs: list[Run]) -> pd.DataFrame:
    """As :func:`accuracy_vs_alpha`, per group of the dataset (rows without one: NO_GROUP)."""
    return _accuracy(_alpha_outcomes(runs), ["run", "source", "group", "n_tokens", "alpha"])


def _reference_rows(runs: list[Run]) -> list[pd.DataFrame]:
    return [ref.assign(run=run.name, group=_group(ref), model=ref["strategy_name"])
            for run in runs if run.results is not None
            for ref in [run.results[run.results["strategy_name"].isin(["student", "teacher"])]] if len(ref)]


def reference_accuracy(runs: list[Run]) -> pd.DataFrame:
    """The student's and the teacher's accuracy in each evaluation run (the horizontal lines)."""
    return _accuracy(_reference_rows(runs), ["run", "model"])


def reference_accuracy_by_group(runs: list[Run]) -> pd.DataFrame:
    """The student's and the teacher's accuracy per group in each evaluation run."""
    return _accuracy(_reference_rows(runs), ["run", "model", "group"])


def _injection_vs_student(run: Run) -> tuple[str, pd.DataFrame] | None:
    """(what was injected, per example: student_entropy, student_correct, injected_correct).

    Evaluations compare the student with their most accurate fixed_alpha strategy; label
    runs compare α = 0 with the grid's most accurate α."""
    if run.results is not None:
        res = run.results
        student = res[res["strategy_name"] == "student"].set_index("example_id")
        fixed = res[res["strategy_name"] == "fixed_alpha"]
        if len(student) and len(fixed):
            best = fixed.groupby("strategy", sort=True)["correct"].mean().idxmax()
            injected = fixed[fixed["strategy"] == best].set_index("example_id")
            both = student.join(injected[["correct"]].rename(columns={"correct": "correct_injected"}), how="inner")
            return best, pd.DataFrame({"student_entropy": both["student_first_entropy"],
                                       "student_correct": both["correct"],
                                       "injected_correct": both["correct_injected"]})
    if run.labels is not None:
        long = label_outcomes(run.labels)
        if 0.0 in set(long["alpha"]):
            best = best_injected_alpha(long)
            if best is not None:
                wide = long.pivot_table(index="example_id", columns="alpha", values="correct", aggfunc="first")
                entropy = long.groupby("example_id")["student_entropy"].first()
                n = int(long["n_tokens"].iloc[0])
                return f"α={best:g}, N={n} (labels)", pd.DataFrame({
                    "student_entropy": entropy, "student_correct": wide[0.0].astype(bool),
                    "injected_correct": wide[best].astype(bool)})
    return None


def helped_hurt(runs: list[Run], n_bins: int = N_BINS) -> pd.DataFrame:
    """Per run and student first-token entropy bin: examples injection made right (helped)
    and made wrong (hurt) relative to the student alone."""
    rows = []
    for run in runs:
        found = _injection_vs_student(run)
        if found is None:
            continue
        injection, ex = found
        ex = ex.dropna(subset=["student_entropy"])
        edges = np.histogram_bin_edges(ex["student_entropy"], bins=n_bins)
        helped = ex.loc[ex["injected_correct"] & ~ex["student_correct"], "student_entropy"]
        hurt = ex.loc[~ex["injected_correct"] & ex["student_correct"], "student_entropy"]
        h, _ = np.histogram(helped, bins=edges)
        k, _ = np.histogram(hurt, bins=edges)
        for i in range(n_bins):
            rows.append({"run": run.name, "injection": injection, "bin_lo": edges[i], "bin_hi": edges[i + 1],
                         "helped": int(h[i]), "hurt": int(k[i])})
    return _frame(rows, ["run", "injection", "bin_lo", "bin_hi", "helped", "hurt"])


def entropy_bands(runs: list[Run]) -> pd.DataFrame:
    """Entropy bands to mark: calibrated ones from predictor artifacts, configured ones
    from entropy_gate strategies of evaluations."""
    rows = []
    for run in runs:
        if run.predictor is not None:
            gate = run.predictor["entropy_gate"]
            rows.append({"run": run.name, "source": "calibrated", "lo": gate["lo"], "hi": gate["hi"], "alpha": gate["alpha"]})
        if run.results is not None:
            gates = run.results[run.results["strategy_name"] == "entropy_gate"]
            for (params, alpha), _ in gates.groupby(["params", "alpha"]):
                if alpha != 0.0:  # rows outside the band record α = 0
                    band = json.loads(params)
                    rows.append({"run": run.name, "source": "entropy_gate strategy", "lo": band["lo"], "hi": band["hi"], "alpha": alpha})
    return _frame(rows, ["run", "source", "lo", "hi", "alpha"])


PREDICTOR_POLICIES = [("student (α=0)", "student_acc"), ("teacher token (α=1)", "teacher_acc"),
                      ("best fixed α", "best_fixed_alpha_acc"), ("predicted α", "predicted_alpha_acc"),
                      ("oracle", "oracle_acc")]


def predictor_comparison(runs: list[Run]) -> pd.DataFrame:
    """Held-out accuracy of each policy, from the artifacts' heldout.parquet."""
    rows = []
    for run in runs:
        if run.heldout is None:
            continue
        metrics = decoding_metrics(run.heldout)
        rows += [{"run": run.name, "policy": policy, "accuracy": metrics[key], "accuracy_lo": metrics["intervals"][key]["lo"],
                  "accuracy_hi": metrics["intervals"][key]["hi"], "n": metrics["n"]}
                 for policy, key in PREDICTOR_POLICIES if metrics[key] is not None]
    return _frame(rows, ["run", "policy", "accuracy", "accuracy_lo", "accuracy_hi", "n"])


def predictor_savings(runs: list[Run]) -> pd.DataFrame:
    """Teacher calls the predictor saves on held-out examples: the share predicted α = 0,
    and the teacher tokens saved per example against injecting N tokens every time."""
    rows = []
    for run in runs:
        if run.heldout is None:
            continue
        metrics = decoding_metrics(run.heldout)
        n_tokens = int(run.predictor["n_tokens"])
        rows.append({"run": run.name, "no_teacher_share": metrics["no_teacher_share"], "n_tokens": n_tokens,
                     "teacher_tokens_saved_per_example": metrics["no_teacher_share"] * n_tokens,
                     "best_fixed_alpha_per_fold": " ".join(f"{a:g}" for a in metrics["best_fixed_alpha_per_fold"])})
    return _frame(rows, ["run", "no_teacher_share", "n_tokens", "teacher_tokens_saved_per_example", "best_fixed_alpha_per_fold"])


def strategy_table(runs: list[Run]) -> pd.DataFrame:
    """Per run and strategy: accuracy, n, teacher tokens per example, examples per busy second."""
    parts = []
    for run in runs:
        if run.results is None:
            continue
        res = run.results.astype({name: float for name in COSTS})
        g = res.groupby("strategy", sort=False)
        # rows of older versions did not count a cost: 0, as the summary takes them; a run of none: null
        costs = {f"{name}_per_example": g[name].agg(lambda x: x.fillna(0).mean() if x.notna().any() else np.nan)
                 for name in COSTS}
        part = pd.DataFrame({"accuracy": g["correct"].mean(), "n": g.size(), **costs,
                             "examples_per_s": g.size() / g["latency_s"].sum()}).reset_index()
        bounds = [wilson_interval(int(k), int(n)) for k, n in zip(g["correct"].sum(), g.size())]
        part.insert(3, "accuracy_lo", [b[0] for b in bounds])
        part.insert(4, "accuracy_hi", [b[1] for b in bounds])
        part.insert(0, "run", run.name)
        parts.append(part)
    columns = ["run", "strategy", "accuracy", "accuracy_lo", "accuracy_hi", "n", *(f"{c}_per_example" for c in COSTS),
               "examples_per_s"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def run_facts(runs: list[Run]) -> pd.DataFrame:
    """Key facts per run and job, from the manifests and the predictor metadata
    (fingerprint: the config hash of a job, the label fingerprint of a predictor)."""
    rows = []
    for run in runs:
        for job, m in run.manifests.items():
            data = m.get("datasets") or [m.get("dataset", {})]  # a run over several benchmarks lists each
            rows.append({"run": run.name, "job": job, "status": m.get("status"),
                         "student": m.get("models", {}).get("student"), "teacher": m.get("models", {}).get("teacher"),
                         "dataset": "; ".join(f"{d.get('source')} ({d.get('split')}, {d.get('n_examples')} examples)" for d in data),
                         "commit": (m.get("git_commit") or "unknown")[:12],
                         "finished_at": m.get("finished_at"), "fingerprint": m.get("config_hash")})
        if run.predictor is not None:
            p = run.predictor
            rows.append({"run": run.name, "job": "train_predictor", "status": "complete",
                         "student": p["feature_spec"]["student"], "teacher": None,
                         "dataset": f"{', '.join(p['label_datasets'])} ({p['n_examples']} examples)",
                         "commit": (p.get("git_commit") or "unknown")[:12], "finished_at": p.get("created_at"),
                         "fingerprint": p.get("label_fingerprint")})
    return _frame(rows, ["run", "job", "status", "student", "teacher", "dataset", "commit", "finished_at", "fingerprint"])


# --- where each labelled example is right: the exact α intervals -----------------------------

def correct_intervals(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per correct distinct leaf: example_id, group, lo, hi (the exact α interval)."""
    cols = ["example_id", "group", "interval_lo", "interval_hi", "interval_correct"]
    long = labels[cols].explode(["interval_lo", "interval_hi", "interval_correct"]).dropna(subset=["interval_lo"])
    long = long[long["interval_correct"].astype(bool)]
    return pd.DataFrame({"example_id": long["example_id"], "group": _group(long),
                         "lo": long["interval_lo"].astype(float), "hi": long["interval_hi"].astype(float)})


def _group_slices(df: pd.DataFrame, groups: bool):
    yield "all", df
    if groups:
        for name, part in df.groupby("group", sort=True):
            yield name, part


def _labelled(runs: list[Run]):
    """(run, its label rows with a group for each, whether groups are shown) per label run."""
    groups = has_groups(runs)
    for run in runs:
        if run.labels is not None:
            yield run, run.labels.assign(group=_group(run.labels)), groups


def correct_alpha(runs: list[Run]) -> pd.DataFrame:
    """Per label run, group ("all" first) and α segment between consecutive interval ends:
    how many examples are answered correctly for every α inside the segment (an example
    counts when one of its correct leaf intervals holds the segment's midpoint); and, as
    rows with alpha_lo = alpha_hi (`at`: "grid α"), how many are right at each grid α itself,
    as the labels record it (two intervals may meet exactly at a grid α)."""
    rows = []
    for run, lab, groups in _labelled(runs):
        ends = np.unique(np.concatenate([np.concatenate(lab["interval_lo"].to_list()),
                                         np.concatenate(lab["interval_hi"].to_list())]).astype(float))
        if len(ends) < 2:
            continue
        mid = (ends[:-1] + ends[1:]) / 2
        ivals = correct_intervals(lab)
        long = label_outcomes(lab)
        for group, part in _group_slices(lab, groups):
            iv = ivals[ivals["example_id"].isin(part["example_id"])]
            # leaves of one example partition the α axis: intervals holding a point = examples right there
            right = (np.searchsorted(np.sort(iv["lo"].to_numpy()), mid, side="right")
                     - np.searchsorted(np.sort(iv["hi"].to_numpy()), mid, side="left"))
            n = len(part)
            rows += [{"run": run.name, "group": group, "at": "segment", "alpha_lo": ends[i], "alpha_hi": ends[i + 1],
                      "right": int(right[i]), "n": n, "share": right[i] / n} for i in range(len(mid))]
            at_grid = long[long["example_id"].isin(part["example_id"])].groupby("alpha", sort=True)["correct"].sum()
            rows += [{"run": run.name, "group": group, "at": "grid α", "alpha_lo": a, "alpha_hi": a,
                      "right": int(k), "n": n, "share": k / n} for a, k in at_grid.items()]
    return _frame(rows, ["run", "group", "at", "alpha_lo", "alpha_hi", "right", "n", "share"])


def correct_alpha_summary(runs: list[Run]) -> pd.DataFrame:
    """Per label run and group: examples right with the student alone (α = 0), right at some
    α of the exact intervals (the oracle over all α), never right; the most accurate grid α."""
    rows = []
    for run, lab, groups in _labelled(runs):
        long = label_outcomes(lab)
        for group, part in _group_slices(lab, groups):
            outcomes = long[long["example_id"].isin(part["example_id"])]
            acc = outcomes.groupby("alpha", sort=False)["correct"].mean()  # grid order: first on ties
            some = part["interval_correct"].map(lambda c: bool(np.any(c)))
            rows.append({"run": run.name, "group": group, "n": len(part),
                         "right_at_alpha_0": int(outcomes.loc[outcomes["alpha"] == 0.0, "correct"].sum()),
                         "right_at_some_alpha": int(some.sum()), "never_right": int((~some).sum()),
                         "best_grid_alpha": float(acc.idxmax()), "best_grid_accuracy": float(acc.max())})
    return _frame(rows, ["run", "group", "n", "right_at_alpha_0", "right_at_some_alpha", "never_right",
                         "best_grid_alpha", "best_grid_accuracy"])


# --- what injection fixes, by the student's first-token entropy (label runs) ------------------

FIX_BINS = 10


def best_injected_alpha(long: pd.DataFrame) -> float | None:
    """The grid's most accurate α ≠ 0 (first in grid order on ties)."""
    acc = long[long["alpha"] != 0.0].groupby("alpha", sort=False)["correct"].mean()
    return float(acc.idxmax()) if len(acc) else None


def fixed_vs_student(runs: list[Run], n_bins: int = FIX_BINS) -> pd.DataFrame:
    """Per label run and bin of the student's first-token entropy: examples the student alone
    gets right (α = 0), examples the grid's best α ≠ 0 fixes (wrong at α = 0, right there),
    and examples some α ≠ 0 of the grid fixes (what a per-example α can reach)."""
    rows = []
    for run in runs:
        if run.labels is None:
            continue
        long = label_outcomes(run.labels)
        best = best_injected_alpha(long)
        if best is None or 0.0 not in set(long["alpha"]):
            continue
        wide = long.pivot_table(index="example_id", columns="alpha", values="correct", aggfunc="first").astype(bool)
        entropy = long.groupby("example_id")["student_entropy"].first().reindex(wide.index)
        student, injected = wide[0.0], wide[best]
        some = wide.drop(columns=0.0).any(axis=1)
        keep = entropy.notna()
        entropy, student, injected, some = entropy[keep], student[keep], injected[keep], some[keep]
        edges = np.histogram_bin_edges(entropy, bins=n_bins)

        def count(mask) -> np.ndarray:
            return np.histogram(entropy[mask], bins=edges)[0]

        n, right, fixed, fixable = count(entropy.notna()), count(student), count(injected & ~student), count(some & ~student)
        n_tokens = int(long["n_tokens"].iloc[0])
        rows += [{"run": run.name, "injection": f"α={best:g}, N={n_tokens}", "bin_lo": edges[i], "bin_hi": edges[i + 1],
                  "n": int(n[i]), "student_right": int(right[i]), "fixed": int(fixed[i]), "fixed_at_some_alpha": int(fixable[i])}
                 for i in range(n_bins)]
    return _frame(rows, ["run", "injection", "bin_lo", "bin_hi", "n", "student_right", "fixed", "fixed_at_some_alpha"])


# --- the comparison users choose from -------------------------------------------------------

COMPARISON_COLUMNS = ["run", "source", "policy", "detail", "accuracy", "accuracy_lo", "accuracy_hi",
                      "vs", "difference", "difference_lo", "difference_hi", "teacher_tokens_per_example", "n"]
# each policy's paired comparison within its run and source: what it must beat
BASELINE = {"predicted α": "best fixed α", "oracle": "best fixed α"}


def _row(run, source, policy, detail, correct, tokens) -> dict:
    """A policy's row; `correct` is indexed by example id, so that policies of one source
    pair up on the same examples (:func:`_paired_differences`)."""
    correct = pd.Series(correct).astype(bool)
    ci = accuracy(correct)
    return {"run": run, "source": source, "policy": policy, "detail": detail, "accuracy": ci.value,
            "accuracy_lo": ci.lo, "accuracy_hi": ci.hi,
            "teacher_tokens_per_example": float(np.mean(tokens)) if np.ndim(tokens) else float(tokens),
            "n": int(len(correct)), "_correct": correct}


def _paired_differences(rows: list[dict]) -> None:
    """Fill vs / difference / its bootstrap interval: each policy against its baseline (the best
    fixed α for predicted α and the oracle, else the student) of the same run and source."""
    for row in rows:
        baseline_name = BASELINE.get(row["policy"], "student")
        base = next((r for r in rows if r["run"] == row["run"] and r["source"] == row["source"]
                     and r["policy"] == baseline_name and r.get("_correct") is not None), None)
        mine = row.get("_correct")
        if base is None or mine is None or row["policy"] == baseline_name:
            continue
        both = pd.concat([mine.rename("a"), base["_correct"].rename("b")], axis=1, join="inner")
        if len(both):
            d = paired_difference(both["a"], both["b"])
            row.update({"vs": baseline_name, "difference": d.value, "difference_lo": d.lo, "difference_hi": d.hi})


def _evaluation_policies(run: Run) -> list[dict]:
    res, rows = run.results, []
    names = {"student": "student", "teacher": "teacher", "predicted_alpha": "predicted α", "entropy_gate": "entropy gate",
             "budget": "budget"}
    res = res.set_index("example_id")
    for name in ("student", "teacher"):
        for label, part in res[res["strategy_name"] == name].groupby("strategy", sort=False):
            rows.append(_row(run.name, "evaluation", names[name], label, part["correct"], part["teacher_tokens"]))
    fixed = res[res["strategy_name"] == "fixed_alpha"]
    if len(fixed):
        g = fixed.groupby("strategy", sort=False).agg(acc=("correct", "mean"), tok=("teacher_tokens", "mean"))
        best = g.sort_values(["acc", "tok"], ascending=[False, True], kind="stable").index[0]
        part = fixed[fixed["strategy"] == best]
        rows.append(_row(run.name, "evaluation", "best fixed α", best, part["correct"], part["teacher_tokens"]))
    for name in ("predicted_alpha", "entropy_gate", "budget"):
        for label, part in res[res["strategy_name"] == name].groupby("strategy", sort=False):
            rows.append(_row(run.name, "evaluation", names[name], label, part["correct"], part["teacher_tokens"]))
    return rows


def apply_gate(long: pd.DataFrame, gate: dict) -> tuple[pd.Series, pd.Series] | None:
    """Per labelled example: (correct, inside) under an entropy gate: α = gate α when the
    student's first-token entropy is in [lo, hi], α = 0 outside."""
    wide = long.pivot_table(index="example_id", columns="alpha", values="correct", aggfunc="first")
    if gate["alpha"] not in wide.columns or 0.0 not in wide.columns:
        return None
    entropy = long.groupby("example_id")["student_entropy"].first().reindex(wide.index)
    inside = (entropy >= gate["lo"]) & (entropy <= gate["hi"])
    return wide[gate["alpha"]].where(inside, wide[0.0]).astype(bool), inside


def _label_policies(run: Run, artifacts: list[Run]) -> list[dict]:
    long = label_outcomes(run.labels)
    n_tokens = int(long["n_tokens"].iloc[0])
    wide = long.pivot_table(index="example_id", columns="alpha", values="correct", aggfunc="first").astype(bool)
    rows, src = [], "labels"
    if 0.0 in wide.columns:
        rows.append(_row(run.name, src, "student", "α=0", wide[0.0], 0.0))
    if 1.0 in wide.columns:
        rows.append(_row(run.name, src, "teacher token", f"α=1, N={n_tokens}", wide[1.0], n_tokens))
    grid = list(dict.fromkeys(long["alpha"]))
    # as the predictor's best fixed α: fewer teacher tokens (α = 0) first on ties, then grid order
    best = float(grid[best_fixed_index(wide[grid].to_numpy(), teacher_tokens(grid, n_tokens))])
    rows.append(_row(run.name, src, "best fixed α", f"α={best:g}, N={n_tokens}", wide[best], n_tokens if best != 0 else 0.0))
    for art in artifacts:
        gate = art.predictor.get("entropy_gate")
        if gate is None or int(art.predictor["n_tokens"]) != n_tokens:
            continue
        found = apply_gate(long, gate)
        if found is not None:
            correct, inside = found
            tokens = inside.astype(float) * (n_tokens if gate["alpha"] != 0 else 0)
            rows.append(_row(run.name, src, "calibrated entropy gate",
                             f"gate of {art.name}: α={gate['alpha']:g} in [{gate['lo']:.3f}, {gate['hi']:.3f}]",
                             correct, tokens))
    oracle = wide.any(axis=1)
    student = wide[0.0] if 0.0 in wide.columns else pd.Series(False, index=wide.index)
    rows.append(_row(run.name, src, "oracle", "α=0 when the student is right, else a correct α", oracle,
                     (oracle & ~student).astype(float) * n_tokens))
    return rows


def _heldout_policies(run: Run) -> list[dict]:
    h, meta = run.heldout.set_index("example_id"), run.predictor
    n_tokens = int(meta["n_tokens"])
    src, rows = "held-out", []
    if "student_correct" in h:
        rows.append(_row(run.name, src, "student", "α=0", h["student_correct"], 0.0))
    if "teacher_correct" in h:
        rows.append(_row(run.name, src, "teacher token", f"α=1, N={n_tokens}", h["teacher_correct"], n_tokens))
    folds = h.groupby("fold")["best_fixed_alpha"].first() if "fold" in h else h["best_fixed_alpha"]
    rows.append(_row(run.name, src, "best fixed α", "chosen on each training fold: α=" + " ".join(f"{a:g}" for a in folds),
                     h["best_fixed_correct"], (h["best_fixed_alpha"] != 0).astype(float) * n_tokens))
    m = meta["metrics"]
    calls = m.get("teacher_call_share", 1.0 - m["no_teacher_share"])
    policy = meta.get("policy", {}).get("kind", "learned")
    rows.append(_row(run.name, src, "predicted α", f"{meta.get('model_kind')}, {meta.get('feature_set', 'student')} features; "
                     f"teacher consulted for {calls:.0%}; the artifact uses the {policy} policy",
                     h["predicted_correct"], (h["chosen_alpha"] != 0).astype(float) * n_tokens))
    gate = meta.get("entropy_gate")
    if gate is not None:
        n = int(meta["n_examples"])
        lo, hi = wilson_interval(round(gate["accuracy"] * n), n)
        rows.append({"run": run.name, "source": "training labels", "policy": "calibrated entropy gate",
                     "detail": f"α={gate['alpha']:g} in [{gate['lo']:.3f}, {gate['hi']:.3f}] (in-sample; teacher tokens: give the label run)",
                     "accuracy": float(gate["accuracy"]), "accuracy_lo": lo, "accuracy_hi": hi,
                     "teacher_tokens_per_example": np.nan, "n": n})
    if "student_correct" in h:
        rows.append(_row(run.name, src, "oracle", "α=0 when the student is right, else a correct α", h["oracle_correct"],
                         (h["oracle_correct"] & ~h["student_correct"]).astype(float) * n_tokens))
    return rows


def comparison(runs: list[Run]) -> pd.DataFrame:
    """Student, teacher, best fixed α, predicted α, entropy gate and oracle: accuracy and
    teacher tokens per example, from evaluations (decoded), label runs (read off the labels;
    the calibrated gates of the given artifacts applied to them) and artifacts (held-out)."""
    artifacts = [r for r in runs if r.predictor is not None]
    rows = []
    for run in runs:
        if run.results is not None:
            rows += _evaluation_policies(run)
        if run.labels is not None:
            rows += _label_policies(run, artifacts)
        if run.heldout is not None:
            rows += _heldout_policies(run)
    _paired_differences(rows)
    return _frame(rows, COMPARISON_COLUMNS)


PREDICTOR_COLUMNS = ["run", "model", "features", "n", "heldout_accuracy", "best_fixed_alpha_accuracy",
                     "learned_vs_best_fixed", "oracle_accuracy", "teacher_call_share", "policy", "why"]


def predictors(runs: list[Run]) -> pd.DataFrame:
    """The given α-predictor artifacts side by side: model, feature set, held-out accuracy
    (95 % interval) against the best fixed α (paired), how often the teacher is consulted,
    and the policy the artifact decodes with, and why."""
    rows = []
    for run in runs:
        if run.predictor is None or run.heldout is None:
            continue
        meta = run.predictor
        m = decoding_metrics(run.heldout, float(meta.get("teacher_token_cost", 0.0)))
        ci = {k: Estimate.from_dict(v).format() for k, v in m["intervals"].items()}
        policy = meta.get("policy", {"kind": "learned", "reason": "artifact of an older format"})
        rows.append({
            "run": run.name, "model": meta.get("model_kind"), "features": meta.get("feature_set", "student"),
            "n": m["n"], "heldout_accuracy": ci["predicted_alpha_acc"], "best_fixed_alpha_accuracy": ci["best_fixed_alpha_acc"],
            "learned_vs_best_fixed": Estimate.from_dict(m["differences"]["predicted_vs_best_fixed"]).format(signed=True),
            "oracle_accuracy": ci["oracle_acc"],
            "teacher_call_share": meta["metrics"].get("teacher_call_share", 1.0 - m["no_teacher_share"]),
            "policy": policy["kind"], "why": policy["reason"]})
    return _frame(rows, PREDICTOR_COLUMNS)


def predictor_selection(runs: list[Run]) -> pd.DataFrame:
    """The feature set × model comparison of artifacts trained with --select."""
    rows = []
    for run in runs:
        for r in (run.predictor or {}).get("selection") or []:
            chosen = (r["features"], r["model"]) == (run.predictor["feature_set"], run.predictor["model_kind"])
            rows.append({"run": run.name, "features": r["features"], "model": r["model"], "chosen": chosen,
                         "inner_cv_utility": r["inner_cv_utility"],
                         "heldout_accuracy": Estimate.from_dict(r["heldout_accuracy"]).format(),
                         "vs_best_fixed": Estimate.from_dict(r["vs_best_fixed"]).format(signed=True),
                         "teacher_call_share": r["teacher_call_share"]})
    return _frame(rows, ["run", "features", "model", "chosen", "inner_cv_utility", "heldout_accuracy", "vs_best_fixed",
                         "teacher_call_share"])


# what the labels add to the trade-off (the held-out rows add their predicted α only when a
# label run is given: their student, best fixed α and oracle repeat the label run's)
TRADEOFF_LABEL_POLICIES = {"student", "best fixed α", "calibrated entropy gate", "oracle"}


# the teacher's costs a trade-off is drawn against, each with its own Pareto column: tokens it
# decided, tokens it read, calls (SWITCH decides few tokens but reads and calls at every step)
TRADEOFF_COSTS = {"teacher_tokens_per_example": "pareto", "teacher_tokens_processed_per_example": "pareto_read",
                  "teacher_calls_per_example": "pareto_calls"}


def tradeoff(runs: list[Run]) -> pd.DataFrame:
    """The points of the accuracy-vs-cost plots, numbered: every strategy of each evaluation,
    and the label and held-out policies of :func:`comparison` whose teacher tokens are known
    (their tokens read and calls are not: null, never on those fronts; the student's are 0)."""
    rows = [{"run": r["run"], "source": "evaluation", "strategy": r["strategy"], "accuracy": r["accuracy"],
             "accuracy_lo": r["accuracy_lo"], "accuracy_hi": r["accuracy_hi"],
             **{cost: r[cost] for cost in TRADEOFF_COSTS}}
            for r in strategy_table(runs).to_dict("records")]
    comp = comparison(runs)
    given_labels = any(r.labels is not None for r in runs)
    wanted = {"labels": TRADEOFF_LABEL_POLICIES,
              "held-out": {"predicted α"} if given_labels else {"predicted α", *TRADEOFF_LABEL_POLICIES}}
    comp = comp[[p in wanted.get(s, ()) for s, p in zip(comp["source"], comp["policy"])]]
    rows += [{"run": r["run"], "source": r["source"], "accuracy": r["accuracy"],
              "accuracy_lo": r["accuracy_lo"], "accuracy_hi": r["accuracy_hi"],
              "strategy": r["policy"] if r["policy"] != "calibrated entropy gate" else r["detail"].split(":")[0].replace("gate of", "calibrated gate of"),
              "teacher_tokens_per_example": r["teacher_tokens_per_example"]} for r in comp.to_dict("records")]
    rows += [row for run in runs if run.labels is not None for row in _first_n_points(run)]
    out = _frame(rows, ["run", "source", "strategy", "accuracy", "accuracy_lo", "accuracy_hi", *TRADEOFF_COSTS])
    student = (out["source"] != "evaluation") & (out["strategy"] == "student")
    out.loc[student, ["teacher_tokens_processed_per_example", "teacher_calls_per_example"]] = 0.0
    out.insert(0, "marker", range(1, len(out) + 1))
    for cost, front in TRADEOFF_COSTS.items():
        out[front] = pareto_front(out["accuracy"].to_numpy(dtype=float), out[cost].to_numpy(dtype=float))
    return out


def _first_n_points(run: Run) -> list[dict]:
    """First-N fixed α off the labels of an N grid: at each N, the grid's best α (not 0)."""
    long = label_outcomes(run.labels, every_n=True)
    long = long[long["alpha"] != 0.0]
    if long["n_tokens"].nunique() < 2:
        return []
    acc = _accuracy([long], ["n_tokens", "alpha"])
    best = acc.sort_values(["accuracy", "alpha"], ascending=[False, True], kind="stable").groupby("n_tokens").head(1)
    return [{"run": run.name, "source": "labels", "strategy": f"first-N fixed α: N={int(r.n_tokens)} (best α={r.alpha:g})",
             "accuracy": r.accuracy, "accuracy_lo": r.accuracy_lo, "accuracy_hi": r.accuracy_hi,
             "teacher_tokens_per_example": float(r.n_tokens), "teacher_calls_per_example": float(r.n_tokens)}
            for r in best.sort_values("n_tokens").itertuples()]


def pareto_front(accuracy: np.ndarray, tokens: np.ndarray) -> list[bool]:
    """Whether each point is on the accuracy-vs-cost front: no other point is as accurate for
    fewer teacher tokens, or more accurate for as many (points of unknown cost: not)."""
    front = []
    for a, t in zip(accuracy, tokens):
        if np.isnan(t):
            front.append(False)
            continue
        beaten = ((accuracy >= a) & (tokens < t)) | ((accuracy > a) & (tokens <= t))
        front.append(not bool(beaten.any()))
    return front


# --- teaching-assistant signals ---------------------------------------------------------------

def signal_auc(runs: list[Run]) -> pd.DataFrame:
    """ROC AUC of each signal for correctness, from each signals run's signals_summary.json
    (keys auc_<signal>_vs_<target>; empty AUC: one class only)."""
    rows = []
    for run in runs:
        if run.signals is None:
            continue
        for key, value in run.signals.items():
            if key.startswith("auc_") and "_vs_" in key:
                signal, target = key[len("auc_"):].split("_vs_", 1)
                rows.append({"run": run.name, "signal": signal, "target": target,
                             "auc": np.nan if value is None else float(value), "n": run.signals.get("n")})
    return _frame(rows, ["run", "signal", "target", "auc", "n"])
