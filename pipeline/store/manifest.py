"""The manifest written beside every output dataset: what produced it, and whether it is finished."""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from pipeline.errors import UserError

PACKAGES = ("limited-teacher-decoding", "torch", "transformers", "datasets", "ray", "pyarrow", "scikit-learn")
CODE_ROOT = Path(__file__).resolve().parents[2]


def config_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 over the package's source files: names the code version where no .git travels
    (under `ray job submit` the working directory is uploaded without it)."""
    digest = hashlib.sha256()
    for package in ("pipeline", "predictor", "jobs"):
        for file in sorted((CODE_ROOT / package).rglob("*.py")):
            digest.update(str(file.relative_to(CODE_ROOT)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def code_version() -> dict:
    return {"git_commit": git_commit(), "source_sha256": source_hash()}


def resume_key(config_hash_: str, dataset_fingerprint: str, identities: dict) -> dict:
    """What a run's rows depend on: a rerun into the same --out must match it."""
    return {"config_hash": config_hash_, "dataset_fingerprint": dataset_fingerprint, "model_identities": identities}


def check_compatible(existing: dict | None, key: dict, where: str, has_rows: bool) -> None:
    """Refuse to mix rows of two configurations, datasets or checkpoints in one output
    location. A run that wrote no rows yet (it failed at start-up) may be replaced."""
    if not existing or not has_rows:
        return
    changed = [f"{name} {existing.get(name)} ≠ {value}" for name, value in key.items() if existing.get(name) != value]
    if changed:
        raise UserError(f"{where} holds results of another configuration ({'; '.join(changed)}): "
                        "use a new --out directory")
