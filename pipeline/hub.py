"""Reaching the Hugging Face Hub, or knowing at once that it cannot be reached.

Without network, transformers and datasets retry a Hub id for a minute before they fail.
A Hub id is therefore tried only when the Hub answers (one short connection attempt per
process) or when the files are already in the local cache; otherwise it fails at once
with one line that says how to point at a local copy instead.
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

from pipeline.errors import UserError

CONNECT_TIMEOUT_S = 2.0


MODEL_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DATASET_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def offline_var(names: tuple[str, ...]) -> str | None:
    """The first of `names` set to a true value (1, true, yes, on), if any."""
    return next((v for v in names if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")), None)


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hub endpoint (HF_ENDPOINT, default huggingface.co) accepts a connection.
    Behind a proxy the endpoint is not reached directly: the Hub libraries are left to try."""
    if any(os.environ.get(v) for v in PROXY_VARS):
        return True
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def why_offline(names: tuple[str, ...] = MODEL_OFFLINE_VARS) -> str | None:
    """None when the Hub can be used; else why not, in a few words."""
    var = offline_var(names)
    if var is not None:
        return f"{var} is set"
    if not hub_reachable():
        return "the Hub is unreachable from this machine"
    return None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def model_in_cache(repo_id: str, revision: str | None) -> bool:
    """Its config and its weights (one file or a shard index) are in the local Hub cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str)

    return cached("config.json") and any(cached(name) for name in WEIGHT_FILES)


def hub_model_kwargs(repo_id: str, revision: str | None) -> dict:
    """from_pretrained keyword arguments for a Hub model id: {} when the Hub can be used,
    local_files_only when it cannot but the model is cached; a UserError otherwise."""
    reason = why_offline()
    if reason is None:
        return {}
    if model_in_cache(repo_id, revision):
        return {"local_files_only": True}
    raise UserError(f"model '{repo_id}' is a Hub id, but {reason} and it is not in the local cache: "
                    f"download it where there is network (huggingface-cli download {repo_id} --local-dir DIR) "
                    f"and set the model's path to DIR")


def check_hub_dataset(source: str) -> None:
    """A Hub dataset id needs the Hub, or HF_HUB_OFFLINE=1 with the dataset in the cache."""
    if offline_var(DATASET_OFFLINE_VARS) or hub_reachable():
        return
    raise UserError(f"dataset '{source}' is a Hub id, but the Hub is unreachable from this machine: point "
                    f"dataset.source at a local JSONL file (e.g. ../shared/data/gsm8k/test.jsonl), or set "
                    f"HF_HUB_OFFLINE=1 to read it from the local cache")
