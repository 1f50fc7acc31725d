"""Nested cross-validation of a decision policy: what a predictor's choices are worth on
examples it did not see, with every choice inside (default α, threshold) made on training
rows only.

Outer folds hold examples out. Inside each outer training split, inner folds give
held-out predictions on which the threshold is chosen (:func:`choose_threshold`); the
default is the best fixed α of the outer training rows. Then the model is refitted on the
whole outer training split and its policy decides the outer held-out rows.

With several candidates (feature set × model), :func:`select_per_fold` picks one per outer
fold on that fold's inner scores alone, so the held-out rows measure the selection too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from predictor.decision import FoldPrediction, Policy, best_fixed_index, choose_threshold, heldout_outcomes

ModelFactory = Callable[[], object]  # a fresh unfitted model of predictor.models


@dataclass
class CrossValidation:
    parts: list[pd.DataFrame]  # per outer fold: its held-out rows (heldout_outcomes)
    outer: list[FoldPrediction]  # the outer folds' held-out predictions: choose the final threshold on them
    inner_scores: list[float]  # per outer fold: mean utility per row over its inner folds, at their chosen thresholds

    @property
    def heldout(self) -> pd.DataFrame:
        """One row per example, from the outer fold that held it out."""
        return pd.concat(self.parts, ignore_index=True)

    @property
    def inner_score(self) -> float:
        return float(np.mean(self.inner_scores))


def _splits(n: int, k: int, seed: int):
    return KFold(n_splits=min(k, n), shuffle=True, random_state=seed).split(np.zeros(n))


def fold_predictions(make: ModelFactory, X: np.ndarray, Y: np.ndarray, tokens: np.ndarray, cost: float,
                     k: int, seed: int, init=None) -> list[FoldPrediction]:
    """Held-out predictions of k folds over the rows of X, each with its training default."""
    out = []
    for train, test in _splits(len(X), k, seed):
        proba = make().fit(X[train], Y[train], init).predict_proba(X[test])
        out.append(FoldPrediction(proba, Y[test], best_fixed_index(Y[train], tokens, cost)))
    return out


def nested_cross_validation(make: ModelFactory, X: np.ndarray, Y: np.ndarray, grid: list[float], tokens: np.ndarray,
                            cost: float, folds: int, inner_folds: int, seed: int, example_ids: list[str],
                            init=None) -> CrossValidation:
    parts, outer, inner_scores = [], [], []
    for fold, (train, test) in enumerate(_splits(len(X), folds, seed)):
        inner = fold_predictions(make, X[train], Y[train], tokens, cost, inner_folds, seed + 1 + fold, init)
        threshold, score = choose_threshold(inner, tokens, cost)
        inner_scores.append(score)
        proba = make().fit(X[train], Y[train], init).predict_proba(X[test])
        default = best_fixed_index(Y[train], tokens, cost)
        chosen = Policy(default, threshold, tuple(tokens), cost).choose(proba)
        part = heldout_outcomes(Y[test], chosen, default, grid, tokens, threshold)
        part.insert(0, "fold", fold)
        part.insert(0, "example_id", [example_ids[i] for i in test])
        parts.append(part)
        outer.append(FoldPrediction(proba, Y[test], default))
    return CrossValidation(parts, outer, inner_scores)


def select_per_fold(candidates: list[CrossValidation]) -> list[int]:
    """Per outer fold, the candidate with the best inner score of that fold (first of equals:
    the simplest listed). Inner scores come from the outer training split only, so the fold's
    held-out rows take no part in choosing what is scored on them. The candidates must share
    their outer folds (same rows, folds and seed)."""
    folds = len(candidates[0].inner_scores)
    return [max(range(len(candidates)), key=lambda c: candidates[c].inner_scores[fold]) for fold in range(folds)]
