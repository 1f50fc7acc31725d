"""Which student features an α-predictor reads, and building its input matrix."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from pipeline.errors import UserError

from pipeline.decoding.features import STUDENT_STATS

# first-token statistics computable from the student alone, so online use needs no teacher call
ONLINE_STATS = STUDENT_STATS


@dataclass(frozen=True)
class FeatureSpec:
    student: str  # model identifier the hidden states come from
    layers: tuple[int, ...]
    pool: str
    hidden_dim: int  # width of the hidden-state part
    stats: tuple[str, ...] = ONLINE_STATS

    @property
    def dim(self) -> int:
        return self.hidden_dim + len(self.stats)

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "stats": list(self.stats), "dim": self.dim}

    @classmethod
    def from_dict(cls, raw: dict) -> "FeatureSpec":
        return cls(raw["student"], tuple(raw["layers"]), raw["pool"], int(raw["hidden_dim"]), tuple(raw["stats"]))

    @classmethod
    def of_labels(cls, table: pa.Table, stats: tuple[str, ...] = ONLINE_STATS) -> "FeatureSpec":
        unknown = [s for s in stats if s not in ONLINE_STATS]
        if unknown:
            raise UserError(f"feature statistics {unknown} need the teacher; online-usable ones: {list(ONLINE_STATS)}")
        first = table.slice(0, 1).to_pylist()[0]
        return cls(first["student"], tuple(first["feature_layers"]), first["feature_pool"], len(first["features"]), tuple(stats))

    def check_matches(self, other: "FeatureSpec", what: str) -> None:
        """A predictor only makes sense on the features it was trained on."""
        mine, theirs = self.to_dict(), other.to_dict()
        diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        if diff:
            detail = "; ".join(f"{k}: predictor {a!r} vs {what} {b!r}" for k, (a, b) in diff.items())
            raise UserError(f"α-predictor was built for other features than {what}: {detail}")


def assemble(hidden: np.ndarray, stats: dict[str, np.ndarray], spec: FeatureSpec) -> np.ndarray:
    """[examples, spec.dim] float32: hidden states followed by the spec's statistics, in order.
    The label rows and a decoding worker's prefill both go through here."""
    columns = [np.asarray(stats[s], dtype=np.float32)[:, None] for s in spec.stats]
    return np.concatenate([np.asarray(hidden, dtype=np.float32), *columns], axis=1)


def feature_matrix(table: pa.Table, spec: FeatureSpec) -> np.ndarray:
    """The predictor's input for the rows of a label dataset."""
    hidden = np.asarray(table.column("features").combine_chunks().flatten(), dtype=np.float32).reshape(table.num_rows, -1)
    return assemble(hidden, {s: table.column(s).to_numpy() for s in spec.stats}, spec)
