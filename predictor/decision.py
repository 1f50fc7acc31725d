"""From P(correct | α) to a chosen α, and what that choice is worth on labelled examples."""
from __future__ import annotations

import numpy as np
import pandas as pd


def choose_alpha_index(proba: np.ndarray, zero_index: int | None, margin: float = 0.0) -> np.ndarray:
    """Per row, the α with the highest predicted P(correct); α = 0 (no teacher call) wins
    unless another α is predicted better by more than `margin`."""
    best = proba.argmax(axis=1)
    if zero_index is None:
        return best
    keep_student = proba[:, zero_index] >= proba[np.arange(len(proba)), best] - margin
    return np.where(keep_student, zero_index, best)


def heldout_outcomes(correct: np.ndarray, chosen: np.ndarray, train_correct: np.ndarray, grid: list[float]) -> pd.DataFrame:
    """Per held-out row [n, A] of labels: the chosen α and whether each policy answers
    correctly, read off the labels (no re-decoding). The best fixed α is the one best on
    the training rows `train_correct`."""
    rows = np.arange(len(correct))
    best_fixed = int(train_correct.mean(axis=0).argmax())
    out = pd.DataFrame({
        "chosen_alpha": np.asarray(grid, dtype=np.float64)[chosen],
        "best_fixed_alpha": float(grid[best_fixed]),
        "predicted_correct": correct[rows, chosen],
        "best_fixed_correct": correct[:, best_fixed],
        "oracle_correct": correct.any(axis=1),
    })
    for name, alpha in (("student_correct", 0.0), ("teacher_correct", 1.0)):
        if alpha in grid:
            out[name] = correct[:, grid.index(alpha)]
    return out


def decoding_metrics(outcomes: pd.DataFrame) -> dict:
    """Accuracies of student, teacher token (α=1), best fixed α, predicted α and oracle over
    the rows of :func:`heldout_outcomes` (pooled over folds), and the share of rows that
    call no teacher."""
    def acc(column: str) -> float | None:
        return float(outcomes[column].mean()) if column in outcomes else None

    return {
        "n": int(len(outcomes)),
        "student_acc": acc("student_correct"),
        "teacher_acc": acc("teacher_correct"),
        "best_fixed_alpha": float(outcomes["best_fixed_alpha"].mode().iloc[0]),
        "best_fixed_alpha_acc": acc("best_fixed_correct"),
        "predicted_alpha_acc": acc("predicted_correct"),
        "oracle_acc": acc("oracle_correct"),
        "no_teacher_share": float((outcomes["chosen_alpha"] == 0.0).mean()),
    }


def calibrate_entropy_gate(entropy: np.ndarray, correct: np.ndarray, grid: list[float], n_edges: int = 16) -> dict:
    """The band [lo, hi] of student first-token entropy and the α that maximise accuracy
    when injecting with α inside the band and letting the student answer alone outside."""
    zero = grid.index(0.0)
    edges = np.unique(np.quantile(entropy, np.linspace(0, 1, n_edges + 1)))
    best = {"accuracy": float(correct[:, zero].mean()), "lo": float(edges[-1]), "hi": float(edges[-1]), "alpha": 0.0}
    for i, lo in enumerate(edges):
        for hi in edges[i:]:
            inside = (entropy >= lo) & (entropy <= hi)
            acc = np.where(inside[:, None], correct, correct[:, [zero]]).mean(axis=0)
            a = int(acc.argmax())
            if acc[a] > best["accuracy"] + 1e-12:
                best = {"accuracy": float(acc[a]), "lo": float(lo), "hi": float(hi), "alpha": float(grid[a])}
    return best
