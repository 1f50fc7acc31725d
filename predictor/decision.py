"""From P(correct | α) to a chosen α, relative to a default, and what that choice is worth.

The default is the best fixed α of the training rows (α = 0, no teacher call, is one
candidate; ties go to the α that asks the teacher for fewer tokens). A row moves away
from the default only where its predicted gain over the default, net of the teacher
tokens it costs, passes a threshold chosen by cross-validation: where gains are small and
noisy, an argmax over many noisy per-α probabilities picks noise (the winner's curse),
and the default is what the learned policy must beat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.stats.intervals import accuracy, paired_difference

# predicted gains over the default a row must pass to move; None: never move (the default)
THRESHOLDS: tuple[float | None, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, None)
TIE = 1e-12


def teacher_tokens(grid, n_tokens: int) -> np.ndarray:
    """Teacher-decided tokens per example of each grid α: N, or 0 for α = 0."""
    return np.where(np.asarray(grid, dtype=np.float64) == 0.0, 0, int(n_tokens))


def preference_order(tokens: np.ndarray) -> np.ndarray:
    """Grid indices, cheapest first (α = 0 before any teacher call), then in grid order:
    argmax over columns in this order breaks ties the cheap way."""
    return np.lexsort((np.arange(len(tokens)), tokens))


def best_fixed_index(correct: np.ndarray, tokens: np.ndarray, cost: float = 0.0) -> int:
    """The α best on rows `correct` [n, A] (accuracy net of teacher tokens × cost); among
    equals, the one with fewer teacher tokens."""
    utility = correct.mean(axis=0) - cost * tokens
    order = preference_order(tokens)
    ranked = utility[order]
    return int(order[np.flatnonzero(ranked >= ranked.max() - TIE)[0]])


@dataclass(frozen=True)
class Policy:
    """Per row: the default α, unless another α is predicted better by more than `threshold`."""

    default_index: int
    threshold: float | None  # None: always the default
    tokens: tuple[int, ...]  # teacher tokens per grid α
    teacher_token_cost: float = 0.0

    def choose(self, proba: np.ndarray) -> np.ndarray:
        """Grid index per row of predicted P(correct | α) [n, A]."""
        d = self.default_index
        if self.threshold is None:
            return np.full(len(proba), d, dtype=np.int64)
        tokens = np.asarray(self.tokens)
        gain = proba - self.teacher_token_cost * tokens
        gain = gain - gain[:, [d]]
        order = preference_order(tokens)
        best = order[gain[:, order].argmax(axis=1)]
        return np.where(gain[np.arange(len(proba)), best] > self.threshold + TIE, best, d)


@dataclass(frozen=True)
class FoldPrediction:
    """One held-out split: predicted P(correct | α) of its rows, their labels, and the
    default chosen on the split's training rows."""

    proba: np.ndarray
    correct: np.ndarray
    default_index: int


def utility_of(correct: np.ndarray, chosen: np.ndarray, tokens: np.ndarray, cost: float) -> np.ndarray:
    """Per row: right or not at the chosen α, less the teacher tokens it cost × cost."""
    return correct[np.arange(len(correct)), chosen].astype(np.float64) - cost * tokens[chosen]


def choose_threshold(folds: list[FoldPrediction], tokens: np.ndarray, cost: float,
                     candidates=THRESHOLDS) -> tuple[float | None, float]:
    """The threshold whose policy scores best over held-out splits (mean utility per row);
    among equals, the most conservative one (None, the default, last of all wins ties)."""
    best, best_score = None, -math.inf
    for threshold in reversed(candidates):  # conservative first: a tie keeps it
        total = sum(utility_of(f.correct, Policy(f.default_index, threshold, tuple(tokens), cost).choose(f.proba), tokens, cost).sum()
                    for f in folds)
        score = total / sum(len(f.correct) for f in folds)
        if score > best_score + TIE:
            best, best_score = threshold, score
    return best, float(best_score)


def heldout_outcomes(correct: np.ndarray, chosen: np.ndarray, default_index: int, grid: list[float],
                     tokens: np.ndarray, threshold: float | None) -> pd.DataFrame:
    """Per held-out row [n, A] of labels: the chosen α and whether each policy answers
    correctly, read off the labels (no re-decoding). `default_index` is the best fixed α
    of the split's training rows."""
    rows = np.arange(len(correct))
    grid_array = np.asarray(grid, dtype=np.float64)
    out = pd.DataFrame({
        "chosen_alpha": grid_array[chosen],
        "best_fixed_alpha": float(grid[default_index]),
        "threshold": np.nan if threshold is None else float(threshold),
        "predicted_correct": correct[rows, chosen],
        "best_fixed_correct": correct[:, default_index],
        "oracle_correct": correct.any(axis=1),
        "predicted_teacher_tokens": tokens[chosen],
        "best_fixed_teacher_tokens": int(tokens[default_index]),
    })
    for name, alpha in (("student_correct", 0.0), ("teacher_correct", 1.0)):
        if alpha in grid:
            out[name] = correct[:, grid.index(alpha)]
    return out


ACCURACIES = {"student_acc": "student_correct", "teacher_acc": "teacher_correct",
              "best_fixed_alpha_acc": "best_fixed_correct", "predicted_alpha_acc": "predicted_correct",
              "oracle_acc": "oracle_correct"}
# paired comparisons over the same held-out rows: (name, policy, baseline)
COMPARISONS = (("predicted_vs_best_fixed", "predicted_correct", "best_fixed_correct"),
               ("predicted_vs_student", "predicted_correct", "student_correct"),
               ("best_fixed_vs_student", "best_fixed_correct", "student_correct"),
               ("oracle_vs_best_fixed", "oracle_correct", "best_fixed_correct"))


def decoding_metrics(outcomes: pd.DataFrame, teacher_token_cost: float = 0.0) -> dict:
    """Accuracies of student, teacher token (α=1), best fixed α, predicted α and oracle over
    the rows of :func:`heldout_outcomes` (pooled over folds), each with its 95 % interval
    (`intervals`), the paired differences that compare them (`differences`, bootstrap over
    the same examples), and the share of rows that call no teacher."""
    metrics: dict = {"n": int(len(outcomes))}
    intervals, differences = {}, {}
    for key, column in ACCURACIES.items():
        metrics[key] = float(outcomes[column].mean()) if column in outcomes else None
        if column in outcomes:
            intervals[key] = accuracy(outcomes[column]).to_dict()
    for name, policy, baseline in COMPARISONS:
        if policy in outcomes and baseline in outcomes:
            differences[name] = paired_difference(outcomes[policy], outcomes[baseline]).to_dict()
    if teacher_token_cost and "predicted_teacher_tokens" in outcomes:
        net = lambda kind: outcomes[f"{kind}_correct"] - teacher_token_cost * outcomes[f"{kind}_teacher_tokens"]  # noqa: E731
        differences["predicted_vs_best_fixed_net_of_cost"] = paired_difference(net("predicted"), net("best_fixed")).to_dict()
    folds = outcomes.groupby("fold")["best_fixed_alpha"].first() if "fold" in outcomes else outcomes["best_fixed_alpha"]
    metrics.update({
        "intervals": intervals,
        "differences": differences,
        # the α each training fold chose (the held-out best-fixed accuracy pools them)
        "best_fixed_alpha_per_fold": [float(a) for a in folds],
        "no_teacher_share": float((outcomes["chosen_alpha"] == 0.0).mean()),
    })
    return metrics


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
