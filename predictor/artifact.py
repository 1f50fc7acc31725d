"""The α-predictor artifact: a directory with the fitted model and metadata.json.

    Predictor.load(dir).predict_alpha(features)  ->  α per row (0.0: do not call the teacher)

A freshly trained artifact also holds ``heldout.parquet``: per labelled example, the α
chosen by the fold model that did not see it and whether each policy answers correctly
(the rows behind ``metadata.json``'s metrics).
"""
from __future__ import annotations

import hashlib
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
        """Write atomically: a half-written artifact never sits at `directory`. The metadata
        records the sha256 of every other file, checked before anything is loaded."""
        target = Path(directory)
        if target.exists():
            raise UserError(f"artifact directory {target} already exists: choose a new --out (artifacts are versions)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            meta = {**self.meta, "format_version": FORMAT_VERSION, "model_file": self.model.save(tmp)}
            if self.heldout is not None:
                self.heldout.to_parquet(tmp / HELDOUT_FILE, index=False)
            meta["files"] = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2))
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.meta = meta
        return target

    @classmethod
    def load(cls, directory: str | Path) -> "Predictor":
        """Load an artifact after checking it: known format and model kind, a model file inside
        the directory, every file's sha256 as recorded. Nothing in it can run code: the
        models are stored as skops (trusted scikit-learn types only) or safetensors."""
        directory = Path(directory)
        meta = read_metadata(directory)
        if meta.get("format_version") != FORMAT_VERSION or meta.get("model_kind") not in MODELS:
            raise UserError(f"{directory}: unsupported artifact (format {meta.get('format_version')}, model "
                            f"{meta.get('model_kind')}; this version reads format {FORMAT_VERSION}): retrain it with jobs.train_predictor")
        files = meta.get("files")
        model_file = meta.get("model_file")
        if not isinstance(files, dict) or not isinstance(model_file, str) or model_file not in files:
            raise UserError(f"{directory}: malformed artifact metadata (no file hashes for its model file)")
        for name, digest in files.items():
            path = directory / name
            if Path(name).name != name or name in ("", ".", "..") or not path.is_file():
                raise UserError(f"{directory}: artifact file '{name}' is missing or outside the artifact directory")
            if _sha256(path) != digest:
                raise UserError(f"{directory}: {name} does not match the sha256 in {METADATA_FILE}: the artifact was changed or truncated")
        return cls(MODELS[meta["model_kind"]].load(directory, meta), meta)


def read_metadata(directory: Path) -> dict:
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise UserError(f"not an α-predictor artifact: {meta_path} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: not a JSON object")
    return meta


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
