"""Loading student/teacher checkpoints with `from_pretrained`, device choice, vocabulary check."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from pipeline.errors import UserError

IDENTITY_HASH_LIMIT = 256 * 2**20  # hash weight files up to this size; larger ones by name and size
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint: a local directory or a Hugging Face Hub id."""

    path: str
    dtype: str = "float32"
    revision: str | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError("model path is empty")
        if self.dtype not in DTYPES:
            raise UserError(f"model '{self.path}': dtype must be one of {sorted(DTYPES)}, got '{self.dtype}'")


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: torch.nn.Module
    tokenizer: object
    device: torch.device

    @property
    def name(self) -> str:
        return self.spec.path


def pick_device(want_gpu: bool = True) -> torch.device:
    """The first visible CUDA device, or CPU when there is none.

    Under Ray, CUDA_VISIBLE_DEVICES is set to the actor's GPU ids, so device 0 is its GPU;
    a logical GPU without a physical CUDA device falls back to CPU.
    """
    if want_gpu and torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or os.path.exists(path)


def _checked_path(spec: ModelSpec) -> str:
    """Local directories must exist; anything else is treated as a Hub id."""
    if _looks_local(spec.path):
        path = os.path.expanduser(spec.path)
        if not os.path.isdir(path):
            raise UserError(f"model not found: '{spec.path}' is not a directory")
        return path
    return spec.path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
    """Load tokenizer and causal LM exactly as real checkpoints are loaded (`from_pretrained`)."""
    device = device or pick_device()
    hf_logging.disable_progress_bar()  # per-shard bars drown the job's own progress
    tokenizer = load_tokenizer(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(_checked_path(spec), revision=spec.revision, dtype=DTYPES[spec.dtype])
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model '{spec.path}': {_first_line(exc)}") from None
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, model, tokenizer, device)


def model_identity(spec: ModelSpec) -> str:
    """A name for the checkpoint that survives moving it: the Hub id (and revision), or for a
    local directory its name plus a hash of its config and weights (weights only when small)."""
    if not _looks_local(spec.path):
        return spec.path + (f"@{spec.revision}" if spec.revision else "")
    root = Path(_checked_path(spec))
    digest = hashlib.sha256()
    for file in sorted(root.glob("*.json")) + sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        if file.suffix == ".json" and file.name not in ("config.json", "model.safetensors.index.json"):
            continue
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        if size <= IDENTITY_HASH_LIMIT:
            digest.update(file.read_bytes())
    return f"{root.name}@{digest.hexdigest()[:12]}"


def load_tokenizer(spec: ModelSpec):
    """The tokenizer alone: cheap, for checks before any model is loaded."""
    path = _checked_path(spec)
    try:
        return AutoTokenizer.from_pretrained(path, revision=spec.revision)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer of model '{spec.path}': {_first_line(exc)}") from None


def load_text_config(spec: ModelSpec):
    """The model's (text) config alone: no weights loaded."""
    try:
        return AutoConfig.from_pretrained(_checked_path(spec), revision=spec.revision).get_text_config()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model config '{spec.path}': {_first_line(exc)}") from None


def load_output_size(spec: ModelSpec) -> int:
    """Rows of the model's output layer."""
    return int(load_text_config(spec).vocab_size)


def load_num_layers(spec: ModelSpec) -> int:
    return int(load_text_config(spec).num_hidden_layers)


def load_hidden_size(spec: ModelSpec) -> int:
    return int(load_text_config(spec).hidden_size)


def shared_vocab_size(student: ModelSpec, teacher: ModelSpec) -> int:
    """Size of the token range both models agree on; mixing happens over it.

    The tokenizers must be identical. A model whose output layer is padded past the
    real vocabulary (common for GPU-friendly sizes) is fine: extra rows are ignored.
    """
    s_vocab, t_vocab = load_tokenizer(student).get_vocab(), load_tokenizer(teacher).get_vocab()
    if s_vocab != t_vocab:
        differing = len(set(s_vocab.items()) ^ set(t_vocab.items()))
        raise UserError(
            f"incompatible tokenizers: student '{student.path}' ({len(s_vocab)} tokens) and teacher "
            f"'{teacher.path}' ({len(t_vocab)} tokens) differ in {differing} entries; both must share one vocabulary"
        )
    size = len(s_vocab)
    for role, spec in (("student", student), ("teacher", teacher)):
        outputs = load_output_size(spec)
        if outputs < size:
            raise UserError(f"{role} '{spec.path}' outputs {outputs} logits, fewer than its tokenizer's {size} tokens")
    return size


def eos_token_ids(lm: LoadedModel) -> set[int]:
    """EOS ids from the tokenizer and the generation config (which may list several)."""
    ids = {lm.tokenizer.eos_token_id} if lm.tokenizer.eos_token_id is not None else set()
    gen = getattr(lm.model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    return ids
