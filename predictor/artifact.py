"""The α-predictor artifact: a directory with the fitted model and metadata.json.

    Predictor.load(dir).predict_alpha(features)  ->  α per row (0.0: do not call the teacher)

A freshly trained artifact also holds ``heldout.parquet``: per labelled example, the α
chosen by the fold model that did not see it and whether each policy answers correctly
(the rows behind ``metadata.json``'s metrics).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.schema import MAX_ABS_ALPHA
from pipeline.errors import UserError
from predictor.decision import Policy, teacher_tokens
from predictor.features import FeatureSpec
from predictor.files import FORMAT_VERSION, HELDOUT_FILE, METADATA_FILE, METADATA_HASH, READABLE_FORMATS
from predictor.models import MODELS


class Predictor:
    def __init__(self, model, meta: dict, heldout: pd.DataFrame | None = None, directory: Path | None = None):
        self.model, self.meta, self.heldout = model, meta, heldout
        self.directory = directory  # where it was loaded from (None: trained in this process)

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

    @property
    def policy(self) -> dict:
        """kind (learned | fixed), reason, default_alpha, threshold: see predictor.decision."""
        return self.meta["policy"]

    @property
    def uses_fixed_policy(self) -> bool:
        return self.policy["kind"] == "fixed"

    def decision_policy(self) -> Policy:
        policy, grid = self.policy, self.alpha_grid
        threshold = None if self.uses_fixed_policy else policy["threshold"]
        return Policy(grid.index(policy["default_alpha"]), threshold, tuple(self.meta["teacher_tokens"]),
                      float(self.meta.get("teacher_token_cost", 0.0)))

    def predict_alpha(self, features: np.ndarray) -> np.ndarray:
        """α per row: the default α, or, under the learned policy, another grid α where its
        predicted gain over the default passes the artifact's threshold."""
        policy = self.decision_policy()
        if policy.threshold is None:  # the fixed policy reads no features
            return np.full(len(features), self.alpha_grid[policy.default_index], dtype=np.float64)
        return np.asarray(self.alpha_grid, dtype=np.float64)[policy.choose(self.predict_proba(features))]

    def label_ids(self) -> set[str]:
        """The example ids it was trained on: every row of its held-out table (each labelled row
        is held out once), kept in memory after training or read from the artifact."""
        heldout = self.heldout
        if heldout is None and self.directory is not None and HELDOUT_FILE in self.meta.get("files", {}):
            try:
                heldout = pd.read_parquet(self.directory / HELDOUT_FILE, columns=["example_id"])
            except Exception as exc:  # noqa: BLE001 - not Parquet, no such column: one line either way
                raise UserError(f"{self.directory}/{HELDOUT_FILE}: cannot read its example ids: {type(exc).__name__}") from None
        if heldout is None:
            raise UserError(f"{self.directory or 'the artifact'} has no {HELDOUT_FILE}: which examples it was trained on is "
                            "unknown, so a warm start from it cannot be checked against these labels")
        return set(map(str, heldout["example_id"]))

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
            meta[METADATA_HASH] = metadata_digest(meta)
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
        # resolved once (a symlinked artifact directory, or a folder above it, is a normal layout);
        # every file is then read inside it, and none of them may be a link
        directory = Path(directory).resolve()
        meta = read_metadata(directory)
        # format 3 (trained before the metadata carried its digest) has none to check; its content
        # is checked below exactly as format 4's, so a downgrade skips nothing an edit could not
        # pass anyway by recomputing the digest
        if meta.get(METADATA_HASH) != metadata_digest(meta) and meta.get("format_version") == FORMAT_VERSION:
            raise UserError(f"{directory}: {METADATA_FILE} was changed after training (its {METADATA_HASH} does not match): "
                            "retrain the artifact, or restore its metadata")
        if meta.get("format_version") not in READABLE_FORMATS or meta.get("model_kind") not in MODELS:
            raise UserError(f"{directory}: unsupported artifact (format {meta.get('format_version')}, model "
                            f"{meta.get('model_kind')}; this version reads formats {', '.join(map(str, READABLE_FORMATS))}): retrain it with jobs.train_predictor")
        files = meta.get("files")
        model_file = meta.get("model_file")
        if not isinstance(files, dict) or not isinstance(model_file, str) or model_file not in files:
            raise UserError(f"{directory}: malformed artifact metadata (no file hashes for its model file)")
        for name, digest in files.items():
            path = directory / name
            if Path(name).name != name or name in ("", ".", "..") or path.is_symlink() or not path.is_file():
                raise UserError(f"{directory}: artifact file '{name}' is missing or outside the artifact directory")
            if _sha256(path) != digest:
                raise UserError(f"{directory}: {name} does not match the sha256 in {METADATA_FILE}: the artifact was changed or truncated")
        _check_policy(directory, meta)
        _check_calibrations(directory, meta)
        try:
            model = MODELS[meta["model_kind"]].load(directory, meta)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a missing tensor, a shape that does not fit: one line either way
            raise UserError(f"{directory}: cannot load its {meta['model_kind']} model: {type(exc).__name__}: {str(exc)[:200]}") from None
        return cls(model, meta, directory=directory)


def check_can_save(directory: str | Path) -> None:
    """Probe a new artifact's location before minutes of training: it must not exist, and its
    nearest existing parent must be a directory this process can create a directory in (what
    `save` does there). Nothing is left behind."""
    target = Path(directory)
    if target.exists() or target.is_symlink():
        raise UserError(f"artifact directory {target} already exists: choose a new --out (artifacts are versions)")
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{target.name}-probe-", dir=parent))
    except OSError as exc:
        raise UserError(f"cannot write the artifact to --out {directory}: {exc.strerror or exc} ({parent})") from None


def _number(value, lo: float = -math.inf, hi: float = math.inf) -> bool:
    """A finite JSON number (not a boolean) within [lo, hi]."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi


def _count(value, lo: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _alpha(value) -> bool:
    """An α the config schema would accept from a YAML entry."""
    return _number(value, -MAX_ABS_ALPHA, MAX_ABS_ALPHA)


def _check_policy(directory: Path, meta: dict) -> None:
    """The decision policy must be one this version can run on the artifact's own grid, and its
    N and teacher tokens what training derives from them."""
    grid, policy, tokens, n = meta.get("alpha_grid"), meta.get("policy"), meta.get("teacher_tokens"), meta.get("n_tokens")
    threshold = policy.get("threshold") if isinstance(policy, dict) else None
    ok = (isinstance(grid, list) and grid and all(_alpha(a) for a in grid) and 0.0 in grid
          and isinstance(policy, dict) and policy.get("kind") in ("learned", "fixed") and policy.get("default_alpha") in grid
          and (threshold is None or _number(threshold))
          and _count(n, 1) and n < 2**31  # past any answer's length, and past int64 the teacher tokens overflow
          and _number(meta.get("teacher_token_cost", 0.0), 0.0, 1.0)
          and isinstance(tokens, list) and all(_count(t) for t in tokens) and tokens == teacher_tokens(grid, n).tolist())
    if not ok:
        raise UserError(f"{directory}: malformed artifact metadata (α grid, N, decision policy or teacher tokens): retrain it "
                        "with jobs.train_predictor")


def _check_calibrations(directory: Path, meta: dict) -> None:
    """What the entropy gate and the budget strategies take from the artifact must be values
    their own config entries would accept: a gate band of finite entropies and an α within the
    schema's bounds; a budget's K a count that covers the first N tokens, a finite threshold on
    a known signal, an α within the bounds. Every other number they record must be finite."""
    gate, budget = meta.get("entropy_gate"), meta.get("budget")
    gate_ok = (isinstance(gate, dict) and _alpha(gate.get("alpha")) and _number(gate.get("lo")) and _number(gate.get("hi"))
               and gate["lo"] <= gate["hi"] and all(_number(v) for v in gate.values()))
    if not gate_ok:
        raise UserError(f"{directory}: malformed artifact metadata (entropy_gate: needs alpha within ±{MAX_ABS_ALPHA:g} and "
                        f"finite lo ≤ hi, got {gate!r}): retrain it with jobs.train_predictor")
    if budget is None:  # trained without position labels
        return
    budget_ok = (isinstance(budget, dict) and budget.get("signal") in ("entropy", "margin") and _number(budget.get("threshold"))
                 and _count(budget.get("k"), max(1, meta["n_tokens"])) and _alpha(budget.get("alpha"))
                 and all(_number(v) for k, v in budget.items() if k not in ("signal", "first_alpha_from")))
    if not budget_ok:
        raise UserError(f"{directory}: malformed artifact metadata (budget: needs a signal, a finite threshold, k ≥ "
                        f"{meta['n_tokens']} and alpha within ±{MAX_ABS_ALPHA:g}, got {budget!r}): retrain it with "
                        "jobs.train_predictor")


def metadata_digest(meta: dict) -> str:
    """sha256 of the metadata without its own digest: the decision policy, grid and metrics
    are as trained, as the other files' digests are as written."""
    body = {k: v for k, v in meta.items() if k != METADATA_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_metadata(directory: Path) -> dict:
    meta_path = directory / METADATA_FILE
    if meta_path.is_symlink():
        raise UserError(f"{directory}: an artifact's files are plain files inside it, not symbolic links ({METADATA_FILE} is one)")
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
