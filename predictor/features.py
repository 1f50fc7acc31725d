"""Which features an α-predictor reads, and building its input matrix.

A feature set is the student's hidden state (or not) and a list of first-token statistics:
- `stats`: the student's first-token entropy, top-1 and top-k probabilities (the top-1/top-2
  margin is their difference);
- `hidden`: the student's hidden state at the chosen layers (the models reduce it: PCA);
- `both`: the two together; `student`: the hidden state, entropy and top-1 probability;
- `two_model`, `two_model_stats`: `both` and `stats` plus the teacher's first-token
  statistics (entropy, top-1 probability, KL and JSD to the student, top-1 agreement, top-k;
  the founding paper's predictor reads both models' first-token logits). The teacher's
  first distribution is then needed for every row before α is chosen.
Without a teacher statistic, the teacher is consulted only for rows whose α ≠ 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from pipeline.decoding.features import STUDENT_STATS, TEACHER_STATS
from pipeline.errors import UserError

# name -> (reads the hidden state, statistics in order)
FEATURE_SETS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "student": (True, ("student_entropy", "student_top1_prob")),
    "stats": (False, STUDENT_STATS),
    "hidden": (True, ()),
    "both": (True, STUDENT_STATS),
    "two_model_stats": (False, (*STUDENT_STATS, *TEACHER_STATS)),
    "two_model": (True, (*STUDENT_STATS, *TEACHER_STATS)),
}
STAT_COLUMNS = sorted({s for _, stats in FEATURE_SETS.values() for s in stats})


@dataclass(frozen=True)
class FeatureSpec:
    student: str  # model identifier the hidden states come from
    layers: tuple[int, ...]
    pool: str
    hidden_dim: int  # width of the student's hidden state at these layers
    stats: tuple[str, ...] = FEATURE_SETS["student"][1]
    stats_dim: int = len(FEATURE_SETS["student"][1])  # width of the statistics part (top-k ones are vectors)
    uses_hidden: bool = True

    @property
    def dim(self) -> int:
        return self.hidden_dim * self.uses_hidden + self.stats_dim

    @property
    def needs_teacher(self) -> bool:
        """Whether choosing α needs the teacher's first-token distribution."""
        return any(s in TEACHER_STATS for s in self.stats)

    @property
    def feature_set(self) -> str:
        return next((name for name, spec in FEATURE_SETS.items() if spec == (self.uses_hidden, self.stats)), "custom")

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "stats": list(self.stats), "dim": self.dim}

    @classmethod
    def from_dict(cls, raw: dict) -> "FeatureSpec":
        stats = tuple(raw["stats"])
        return cls(raw["student"], tuple(raw["layers"]), raw["pool"], int(raw["hidden_dim"]), stats,
                   int(raw.get("stats_dim", len(stats))), bool(raw.get("uses_hidden", True)))

    @classmethod
    def of_labels(cls, table: pa.Table, feature_set: str = "student") -> "FeatureSpec":
        if feature_set not in FEATURE_SETS:
            raise UserError(f"unknown feature set '{feature_set}' (known: {', '.join(FEATURE_SETS)})")
        uses_hidden, stats = FEATURE_SETS[feature_set]
        missing = [s for s in stats if s not in table.column_names]
        if missing:
            raise UserError(f"label dataset lacks {missing} for the '{feature_set}' feature set: relabel with this version")
        first = table.slice(0, 1).to_pylist()[0]
        width = sum(len(first[s]) if isinstance(first[s], list) else 1 for s in stats)
        return cls(first["student"], tuple(first["feature_layers"]), first["feature_pool"], len(first["features"]), stats, width,
                   uses_hidden)

    def check_matches(self, other: "FeatureSpec", what: str) -> None:
        """A predictor only makes sense on the features it was trained on."""
        mine, theirs = self.to_dict(), other.to_dict()
        diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        if diff:
            detail = "; ".join(f"{k}: predictor {a!r} vs {what} {b!r}" for k, (a, b) in diff.items())
            raise UserError(f"α-predictor was built for other features than {what}: {detail}")


def assemble(hidden: np.ndarray, stats: dict, spec: FeatureSpec) -> np.ndarray:
    """[examples, spec.dim] float32: hidden states (if the spec reads them) followed by the
    spec's statistics, in order (a top-k statistic spreads over k columns). The label rows
    and a decoding worker's prefill both go through here."""
    hidden = np.asarray(hidden, dtype=np.float32).reshape(len(hidden), -1)
    columns = [np.asarray(stats[s], dtype=np.float32).reshape(len(hidden), -1) for s in spec.stats]
    return np.concatenate([hidden if spec.uses_hidden else hidden[:, :0], *columns], axis=1)


def feature_matrix(table: pa.Table, spec: FeatureSpec) -> np.ndarray:
    """The predictor's input for the rows of a label dataset."""
    hidden = np.asarray(table.column("features").combine_chunks().flatten(), dtype=np.float32).reshape(table.num_rows, -1)
    return assemble(hidden, {s: table.column(s).to_pylist() for s in spec.stats}, spec)
