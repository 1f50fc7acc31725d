"""From P(correct | α) to a chosen α, and what that choice is worth on labelled examples."""
from __future__ import annotations

import numpy as np


def choose_alpha_index(proba: np.ndarray, zero_index: int | None, margin: float = 0.0) -> np.ndarray:
    """Per row, the α with the highest predicted P(correct); α = 0 (no teacher call) wins
    unless another α is predicted better by more than `margin`."""
    best = proba.argmax(axis=1)
    if zero_index is None:
        return best
    keep_student = proba[:, zero_index] >= proba[np.arange(len(proba)), best] - margin
    return np.where(keep_student, zero_index, best)


def decoding_metrics(correct: np.ndarray, chosen: np.ndarray, train_correct: np.ndarray, grid: list[float]) -> dict:
    """Accuracies read off the labels (no re-decoding) for held-out rows `correct` [n, A]."""
    rows = np.arange(len(correct))
    best_fixed = int(train_correct.mean(axis=0).argmax())
    out = {
        "n": int(len(correct)),
        "predicted_alpha_acc": float(correct[rows, chosen].mean()),
        "best_fixed_alpha": float(grid[best_fixed]),
        "best_fixed_alpha_acc": float(correct[:, best_fixed].mean()),
        "oracle_acc": float(correct.any(axis=1).mean()),
        "no_teacher_share": float(np.mean([grid[c] == 0.0 for c in chosen])),
    }
    for name, alpha in (("student_acc", 0.0), ("teacher_acc", 1.0)):
        out[name] = float(correct[:, grid.index(alpha)].mean()) if alpha in grid else None
    return out


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
