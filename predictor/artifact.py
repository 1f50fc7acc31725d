"""The α-predictor artifact: a directory with the fitted model and metadata.json.

    Predictor.load(dir).predict_alpha(features)  ->  α per row (0.0: do not call the teacher)

A freshly trained artifact also holds ``heldout.parquet``: per labelled example, the α
chosen by the fold model that did not see it and whether each policy answers correctly
(the rows behind ``metadata.json``'s metrics).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import UserError
from predictor.decision import choose_alpha_index
from predictor.features import FeatureSpec
from predictor.files import FORMAT_VERSION, HELDOUT_FILE, METADATA_FILE
from predictor.models import MODELS


class Predictor:
    def __init__(self, model, meta: dict, heldout: pd.DataFrame | None = None):
        self.model, self.meta, self.heldout = model, meta, heldout

    @property
    def alpha_grid(self) -> list[float]:
        return list(self.meta["alpha_grid"])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.meta["feature_spec"])

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(correct | α) per row and grid α: [rows, len(alpha_grid)]."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_spec.dim:
            raise UserError(f"α-predictor expects features of width {self.feature_spec.dim}, got shape {features.shape}")
        return self.model.predict_proba(features)

    def predict_alpha(self, features: np.ndarray) -> np.ndarray:
        grid = self.alpha_grid
        zero = grid.index(0.0) if 0.0 in grid else None
        chosen = choose_alpha_index(self.predict_proba(features), zero, self.meta.get("decision_margin", 0.0))
        return np.asarray(grid, dtype=np.float64)[chosen]

    def save(self, directory: str | Path) -> Path:
        """Write atomically: a half-written artifact never sits at `directory`."""
        target = Path(directory)
        if target.exists():
            raise UserError(f"artifact directory {target} already exists: choose a new --out (artifacts are versions)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            meta = {**self.meta, "format_version": FORMAT_VERSION, "model_file": self.model.save(tmp)}
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2))
            if self.heldout is not None:
                self.heldout.to_parquet(tmp / HELDOUT_FILE, index=False)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.meta = meta
        return target

    @classmethod
    def load(cls, directory: str | Path) -> "Predictor":
        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        if not meta_path.is_file():
            raise UserError(f"not an α-predictor artifact: {meta_path} not found")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("model_kind") not in MODELS:
            raise UserError(f"{directory}: unsupported artifact (format {meta.get('format_version')}, model {meta.get('model_kind')})")
        return cls(MODELS[meta["model_kind"]].load(directory, meta), meta)
