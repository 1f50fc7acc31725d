"""The `budget` strategy calibrated on position labels: the signal, threshold, K and α after the
first tokens that maximise accuracy (net of teacher tokens at `teacher_token_cost`).

A budget is replayed on each labelled example without decoding, as the strategy decodes it.
Its first N tokens take the artifact's α (its held-out prediction for the example, or the
fixed policy's α), N teacher tokens where that α is not 0 (so K ≥ N), and where they are not
the student's own tokens the α-label says whether the answer is right and the replay ends.
Otherwise the answer so far is the student's greedy one, and the replay walks its later steps:
at each step whose recorded uncertainty passes the threshold, while budget is left, one
teacher token is spent; where the position label's mixed token differs from the greedy token,
its label gives the answer. A step without a label (beyond the M most uncertain) is assumed to
keep the student's token when consulted: `unlabelled_share` says how often that happened, so
how far the estimate leans on the assumption. Once the path has left the greedy answer, later
consultations are not known: the replay takes the label's answer (exact for K = 1, and
wherever one changed token settles the answer, as in the demo world) and counts no more
teacher tokens, so its tokens per example are a lower bound where K leaves some unspent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.stats.intervals import accuracy

POSITION_COLUMNS = ["first_tokens", "greedy_token_ids", "greedy_correct", "student_entropy_trace", "student_margin_trace",
                    "position_alpha_grid", "position_steps", "position_tokens", "position_correct"]
EXTRA = (0, 1, 2, 4)  # K candidates: the first tokens the threshold does not decide, plus these
N_EDGES = 16


@dataclass(frozen=True)
class Budget:
    signal: str  # entropy: unsure above the threshold; margin: below it
    threshold: float
    k: int
    alpha: float


@dataclass
class _Example:
    grid_correct: list[bool]  # α-labels at N, per grid α
    diverges: list[bool]  # per grid α: its first N tokens are not the student's own
    first_lengths: list[int]  # per grid α: its first tokens (fewer than N where the answer ended before)
    first: int | None  # grid index of the first tokens' α (None: no artifact α, or 0)
    greedy: list[int]
    greedy_correct: bool
    trace: dict[str, np.ndarray]  # the student's entropy and margin at every step
    labelled: dict[int, int]  # step -> index into the position columns
    tokens: list[list[int]]
    correct: list[list[bool]]


def has_positions(table: pa.Table) -> bool:
    return "position_steps" in table.column_names and table.column("position_steps").null_count < table.num_rows


def replay(ex: _Example, budget: Budget, start: int, position_alpha: int) -> tuple[bool, int, int]:
    """(right, teacher tokens spent, consultations at unlabelled steps) of one example; the
    threshold decides from step `start` on (the artifact's N, or 0 without one)."""
    spent = 0
    if ex.first is not None:  # the artifact's α ≠ 0: each of its first tokens is a teacher token
        spent = min(start, ex.first_lengths[ex.first])
        if ex.diverges[ex.first]:
            return ex.grid_correct[ex.first], spent, 0
    unlabelled = 0
    values = ex.trace[budget.signal][start:]
    unsure = values > budget.threshold if budget.signal == "entropy" else values < budget.threshold
    for t in (np.flatnonzero(unsure)[: max(budget.k - spent, 0)] + start).tolist():
        spent += 1
        j = ex.labelled.get(t)
        if j is None:
            unlabelled += 1
        elif ex.tokens[j][position_alpha] != ex.greedy[t]:
            return ex.correct[j][position_alpha], spent, unlabelled
    return ex.greedy_correct, spent, unlabelled


def _examples(table: pa.Table, first_alpha: list[float] | None, grid: list[float]) -> list[_Example]:
    cols = {c: table.column(c).to_pylist() for c in POSITION_COLUMNS + ["correct"]}
    zero = grid.index(0.0)
    out = []
    for i in range(table.num_rows):
        first = None if first_alpha is None or first_alpha[i] == 0 else grid.index(first_alpha[i])
        firsts = cols["first_tokens"][i]
        out.append(_Example(cols["correct"][i], [f != firsts[zero] for f in firsts], [len(f) for f in firsts], first,
                            cols["greedy_token_ids"][i],
                            cols["greedy_correct"][i],
                            {"entropy": np.asarray(cols["student_entropy_trace"][i]),
                             "margin": np.asarray(cols["student_margin_trace"][i])},
                            {s: j for j, s in enumerate(cols["position_steps"][i])}, cols["position_tokens"][i],
                            cols["position_correct"][i]))
    return out


def _thresholds(examples: list[_Example], signal: str, start: int) -> list[float]:
    """Midpoints between quantiles of the signal at the labelled steps (past the first tokens)."""
    values = [ex.trace[signal][s] for ex in examples for s in ex.labelled if s >= start]
    if not values:
        return []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, N_EDGES + 1)))
    return [float(x) for x in (edges[:-1] + edges[1:]) / 2] or [float(edges[0])]


def calibrate_budget(table: pa.Table, first_alpha: list[float] | None, n_tokens: int, cost: float) -> dict | None:
    """The best budget on these labels (`first_alpha`: per row, the artifact's α for its first
    N tokens), with its accuracy (95 % interval) and costs on them; None without position labels."""
    if not has_positions(table):
        return None
    table = table.filter(pa.compute.is_valid(table.column("position_steps")))
    grid = [float(a) for a in table.column("alpha_grid")[0].as_py()]
    alphas = [float(a) for a in table.column("position_alpha_grid")[0].as_py()]
    examples = _examples(table, first_alpha, grid)
    start = 0 if first_alpha is None else n_tokens
    best = None
    for signal in ("entropy", "margin"):
        for threshold in _thresholds(examples, signal, start):
            for k in [start + e for e in EXTRA if start + e > 0]:  # K < N would cut the artifact's tokens short
                for ai, alpha in enumerate(alphas):
                    if alpha == 0:  # asks nothing after the first tokens
                        continue
                    budget = Budget(signal, threshold, k, alpha)
                    outcomes = [replay(ex, budget, start, ai) for ex in examples]
                    right = [o[0] for o in outcomes]
                    tokens = float(np.mean([o[1] for o in outcomes]))
                    score = (float(np.mean(right)) - cost * tokens, -tokens)
                    if best is None or score > best[0]:
                        best = (score, budget, right, tokens, sum(o[2] for o in outcomes), sum(o[1] for o in outcomes))
    if best is None:
        return None
    _, budget, right, tokens, unlabelled, spent = best
    ci = accuracy(right)
    return {"signal": budget.signal, "threshold": budget.threshold, "k": budget.k, "alpha": budget.alpha,
            "accuracy": ci.value, "accuracy_lo": ci.lo, "accuracy_hi": ci.hi, "n": ci.n,
            "teacher_tokens_per_example": tokens, "unlabelled_share": unlabelled / spent if spent else 0.0,
            "first_alpha_from": "held-out predictions" if first_alpha is not None else "none"}
