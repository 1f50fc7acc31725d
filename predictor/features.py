"""Which features an α-predictor reads, and building its input matrix.

Two feature sets of one artifact kind:
- `student`: the student's hidden state plus its first-token entropy and top-1
  probability; the teacher is consulted only for rows predicted α ≠ 0.
- `two_model`: adds the teacher's first-token statistics (entropy, top-1 probability,
  KL and JSD to the student, top-1 agreement) and the top-k probabilities of both
  models (the founding paper's predictor reads both models' first-token logits); the
  teacher's first distribution is needed for every row before α is chosen.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from pipeline.decoding.features import STUDENT_STATS, TEACHER_STATS
from pipeline.errors import UserError

FEATURE_SETS = {
    "student": ("student_entropy", "student_top1_prob"),
    "two_model": (*STUDENT_STATS, *TEACHER_STATS),
}


@dataclass(frozen=True)
class FeatureSpec:
    student: str  # model identifier the hidden states come from
    layers: tuple[int, ...]
    pool: str
    hidden_dim: int  # width of the hidden-state part
    stats: tuple[str, ...] = FEATURE_SETS["student"]
    stats_dim: int = len(FEATURE_SETS["student"])  # width of the statistics part (top-k ones are vectors)

    @property
    def dim(self) -> int:
        return self.hidden_dim + self.stats_dim

    @property
    def needs_teacher(self) -> bool:
        """Whether choosing α needs the teacher's first-token distribution."""
        return any(s in TEACHER_STATS for s in self.stats)

    @property
    def feature_set(self) -> str:
        return next((name for name, stats in FEATURE_SETS.items() if stats == self.stats), "custom")

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "stats": list(self.stats), "dim": self.dim}

    @classmethod
    def from_dict(cls, raw: dict) -> "FeatureSpec":
        stats = tuple(raw["stats"])
        return cls(raw["student"], tuple(raw["layers"]), raw["pool"], int(raw["hidden_dim"]), stats,
                   int(raw.get("stats_dim", len(stats))))

    @classmethod
    def of_labels(cls, table: pa.Table, feature_set: str = "student") -> "FeatureSpec":
        if feature_set not in FEATURE_SETS:
            raise UserError(f"unknown feature set '{feature_set}' (known: {', '.join(FEATURE_SETS)})")
        stats = FEATURE_SETS[feature_set]
        missing = [s for s in stats if s not in table.column_names]
        if missing:
            raise UserError(f"label dataset lacks {missing} for the '{feature_set}' feature set: relabel with this version")
        first = table.slice(0, 1).to_pylist()[0]
        width = sum(len(first[s]) if isinstance(first[s], list) else 1 for s in stats)
        return cls(first["student"], tuple(first["feature_layers"]), first["feature_pool"], len(first["features"]), stats, width)

    def check_matches(self, other: "FeatureSpec", what: str) -> None:
        """A predictor only makes sense on the features it was trained on."""
        mine, theirs = self.to_dict(), other.to_dict()
        diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        if diff:
            detail = "; ".join(f"{k}: predictor {a!r} vs {what} {b!r}" for k, (a, b) in diff.items())
            raise UserError(f"α-predictor was built for other features than {what}: {detail}")


def assemble(hidden: np.ndarray, stats: dict, spec: FeatureSpec) -> np.ndarray:
    """[examples, spec.dim] float32: hidden states followed by the spec's statistics, in order
    (a top-k statistic spreads over k columns). The label rows and a decoding worker's
    prefill both go through here."""
    columns = [np.asarray(stats[s], dtype=np.float32).reshape(len(hidden), -1) for s in spec.stats]
    return np.concatenate([np.asarray(hidden, dtype=np.float32), *columns], axis=1)


def feature_matrix(table: pa.Table, spec: FeatureSpec) -> np.ndarray:
    """The predictor's input for the rows of a label dataset."""
    hidden = np.asarray(table.column("features").combine_chunks().flatten(), dtype=np.float32).reshape(table.num_rows, -1)
    return assemble(hidden, {s: table.column(s).to_pylist() for s in spec.stats}, spec)
