"""What a job needs to know about a checkpoint before loading its weights, computed once.

`model_facts` reads the tokenizer and the config once and hashes the weights once; jobs
pass the result on (to work units, actors, manifests) instead of asking again.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.config.sections import ModelSpec
from pipeline.errors import UserError
from pipeline.models.loading import checked_path, generation_eos, load_text_config, load_tokenizer, looks_local

IDENTITY_HASH_LIMIT = 256 * 2**20  # hash weight files up to this size; larger ones by name and size


@dataclass(frozen=True)
class ModelFacts:
    path: str
    identity: str  # survives moving the checkpoint: Hub id@revision, or directory name@content hash
    vocab_size: int  # tokens of its tokenizer
    vocab_digest: str  # sha256 of the tokenizer's token → id map
    output_size: int  # rows of its output layer (≥ vocab_size when padded)
    num_layers: int
    hidden_size: int
    max_positions: int | None  # context length, when the config states it
    eos_ids: tuple[int, ...] = ()  # end-of-sequence ids: tokenizer, config and generation_config together
    num_parameters: int = 0  # counted on an empty (meta-device) model: no weights read
    kv_values_per_token: int = 0  # keys and values one token adds to the KV cache, over all layers


@functools.lru_cache(maxsize=8)
def model_facts(spec: ModelSpec) -> ModelFacts:
    tokenizer = load_tokenizer(spec)
    vocab = tokenizer.get_vocab()
    config = load_text_config(spec)
    digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()
    positions = getattr(config, "max_position_embeddings", None)
    eos = _ids(tokenizer.eos_token_id) | _ids(getattr(config, "eos_token_id", None)) | _ids(generation_eos(spec))
    return ModelFacts(spec.path, model_identity(spec), len(vocab), digest, int(config.vocab_size),
                      int(config.num_hidden_layers), int(config.hidden_size), int(positions) if positions else None,
                      tuple(sorted(eos)), count_parameters(config), kv_values_per_token(config))


def count_parameters(config) -> int:
    """Parameters of the model a config describes, built on the meta device (shapes only)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - a config transformers cannot build alone: a dense transformer's count
        hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
        inner = int(getattr(config, "intermediate_size", None) or 4 * hidden)
        return layers * (4 * hidden * hidden + 3 * hidden * inner) + 2 * int(config.vocab_size) * hidden
    return sum(p.numel() for p in model.parameters())


def kv_values_per_token(config) -> int:
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else 0))
    return 2 * int(config.num_hidden_layers) * kv_heads * head_dim


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(value)} if isinstance(value, int) else {int(v) for v in value}


def check_budget(max_new_tokens: int, *models: ModelFacts) -> None:
    """A token budget no model can hold is a config mistake, found before any decoding."""
    for facts in models:
        if facts.max_positions is not None and max_new_tokens >= facts.max_positions:
            raise UserError(f"decoding.max_new_tokens ({max_new_tokens}) does not fit the context of "
                            f"'{facts.path}' ({facts.max_positions} positions, prompt included)")


def model_identity(spec: ModelSpec) -> str:
    """A name for the checkpoint that survives moving it: the Hub id (and revision), or for a
    local directory its name plus a hash of its config and weights (weights only when small)."""
    if not looks_local(spec.path):
        return spec.path + (f"@{spec.revision}" if spec.revision else "")
    root = Path(checked_path(spec))
    digest = hashlib.sha256()
    for file in sorted(root.glob("*.json")) + sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        if file.suffix == ".json" and file.name not in ("config.json", "model.safetensors.index.json"):
            continue
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        if size <= IDENTITY_HASH_LIMIT:
            digest.update(file.read_bytes())
    return f"{root.name}@{digest.hexdigest()[:12]}"


def shared_vocab_size(student: ModelFacts, teacher: ModelFacts) -> int:
    """Size of the token range both models agree on; mixing happens over it.

    The tokenizers must be identical. A model whose output layer is padded past the
    real vocabulary (common for GPU-friendly sizes) is fine: extra rows are ignored.
    """
    if student.vocab_digest != teacher.vocab_digest:
        raise UserError(
            f"incompatible tokenizers: student '{student.path}' ({student.vocab_size} tokens) and teacher "
            f"'{teacher.path}' ({teacher.vocab_size} tokens) differ; both must share one vocabulary"
        )
    for role, facts in (("student", student), ("teacher", teacher)):
        if facts.output_size < facts.vocab_size:
            raise UserError(f"{role} '{facts.path}' outputs {facts.output_size} logits, fewer than its tokenizer's {facts.vocab_size} tokens")
    return student.vocab_size
