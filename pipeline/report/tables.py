"""The data behind every plot and table of a report, as DataFrames with a `run` column.

Each function reads only the runs' Parquet rows (and, for facts, their manifests), so a
report's numbers can be checked against a direct pandas computation on the same files.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report.runs import Run
from predictor.decision import decoding_metrics

N_BINS = 20


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def label_outcomes(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (example, grid α): example_id, n_tokens, alpha, correct, student_entropy."""
    long = labels.explode(["alpha_grid", "correct"]).rename(columns={"alpha_grid": "alpha"})
    return long.astype({"alpha": float, "correct": bool})


def accuracy_vs_alpha(runs: list[Run]) -> pd.DataFrame:
    """Accuracy per (run, source, N, α): fixed_alpha rows of evaluations, every grid α of label runs."""
    parts = []
    for run in runs:
        if run.results is not None:
            fixed = run.results[run.results["strategy_name"] == "fixed_alpha"]
            parts.append(fixed.assign(run=run.name, source="evaluation"))
        if run.labels is not None:
            parts.append(label_outcomes(run.labels).assign(run=run.name, source="labels"))
    columns = ["run", "source", "n_tokens", "alpha", "accuracy", "n"]
    if not parts:
        return pd.DataFrame(columns=columns)
    rows = pd.concat([p[["run", "source", "n_tokens", "alpha", "correct"]] for p in parts], ignore_index=True)
    out = rows.groupby(["run", "source", "n_tokens", "alpha"], sort=True)["correct"].agg(accuracy="mean", n="size")
    return out.reset_index()[columns]


def reference_accuracy(runs: list[Run]) -> pd.DataFrame:
    """The student's and the teacher's accuracy in each evaluation run (the horizontal lines)."""
    rows = []
    for run in runs:
        if run.results is None:
            continue
        for model in ("student", "teacher"):
            correct = run.results.loc[run.results["strategy_name"] == model, "correct"]
            if len(correct):
                rows.append({"run": run.name, "model": model, "accuracy": float(correct.mean()), "n": len(correct)})
    return _frame(rows, ["run", "model", "accuracy", "n"])


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
            both = student.join(injected[["correct"]], rsuffix="_injected", how="inner")
            return best, pd.DataFrame({"student_entropy": both["student_first_entropy"],
                                       "student_correct": both["correct"],
                                       "injected_correct": both["correct_injected"]})
    if run.labels is not None:
        long = label_outcomes(run.labels)
        if 0.0 in set(long["alpha"]):
            acc = long[long["alpha"] != 0.0].groupby("alpha")["correct"].mean()
            if len(acc):
                best = float(acc.idxmax())
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
            for (lo, hi, alpha), _ in gates.groupby(["entropy_lo", "entropy_hi", "alpha"]):
                if alpha != 0.0:  # rows outside the band record α = 0
                    rows.append({"run": run.name, "source": "entropy_gate strategy", "lo": lo, "hi": hi, "alpha": alpha})
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
        rows += [{"run": run.name, "policy": policy, "accuracy": metrics[key], "n": metrics["n"]}
                 for policy, key in PREDICTOR_POLICIES if metrics[key] is not None]
    return _frame(rows, ["run", "policy", "accuracy", "n"])


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
                     "best_fixed_alpha": metrics["best_fixed_alpha"]})
    return _frame(rows, ["run", "no_teacher_share", "n_tokens", "teacher_tokens_saved_per_example", "best_fixed_alpha"])


def strategy_table(runs: list[Run]) -> pd.DataFrame:
    """Per run and strategy: accuracy, n, teacher tokens per example, examples per busy second."""
    parts = []
    for run in runs:
        if run.results is None:
            continue
        g = run.results.groupby("strategy", sort=False)
        part = pd.DataFrame({"accuracy": g["correct"].mean(), "n": g.size(),
                             "teacher_tokens_per_example": g["teacher_tokens"].mean(),
                             "examples_per_s": g.size() / g["latency_s"].sum()}).reset_index()
        part.insert(0, "run", run.name)
        parts.append(part)
    columns = ["run", "strategy", "accuracy", "n", "teacher_tokens_per_example", "examples_per_s"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def run_facts(runs: list[Run]) -> pd.DataFrame:
    """Key facts per run and job, from the manifests and the predictor metadata
    (fingerprint: the config hash of a job, the label fingerprint of a predictor)."""
    rows = []
    for run in runs:
        for job, m in run.manifests.items():
            data = m.get("dataset", {})
            rows.append({"run": run.name, "job": job, "status": m.get("status"),
                         "student": m.get("models", {}).get("student"), "teacher": m.get("models", {}).get("teacher"),
                         "dataset": f"{data.get('source')} ({data.get('split')}, {data.get('n_examples')} examples)",
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
