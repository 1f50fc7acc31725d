"""The manifest written beside every output dataset: what produced it, and whether it is finished."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from pipeline.errors import UserError

PACKAGES = ("torch", "transformers", "datasets", "ray", "pyarrow", "scikit-learn")


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


def check_compatible(existing: dict | None, key_hash: str, where: str) -> None:
    """Refuse to mix results of two configurations in one output location."""
    if existing and existing.get("config_hash") != key_hash:
        raise UserError(
            f"{where} holds results of another configuration (config_hash {existing.get('config_hash')} ≠ {key_hash}); "
            "use a new --out directory"
        )
