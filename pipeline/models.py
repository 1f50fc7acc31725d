"""Loading student/teacher checkpoints with `from_pretrained`, device choice, vocabulary check."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from pipeline.errors import UserError

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


def load_model(spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
    """Load tokenizer and causal LM exactly as real checkpoints are loaded (`from_pretrained`)."""
    device = device or pick_device()
    hf_logging.disable_progress_bar()  # per-shard bars drown the job's own progress
    if _looks_local(spec.path) and not os.path.isdir(os.path.expanduser(spec.path)):
        raise UserError(f"model not found: '{spec.path}' is not a directory")
    path = os.path.expanduser(spec.path) if _looks_local(spec.path) else spec.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision)
        model = AutoModelForCausalLM.from_pretrained(path, revision=spec.revision, dtype=DTYPES[spec.dtype])
    except (OSError, ValueError, EnvironmentError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model '{spec.path}': {reason}") from None
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, model, tokenizer, device)


def output_vocab_size(model: torch.nn.Module) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def shared_vocab_size(student: LoadedModel, teacher: LoadedModel) -> int:
    """Size of the token range both models agree on; mixing happens over it.

    The tokenizers must be identical. A model whose output layer is padded past the
    real vocabulary (common for GPU-friendly sizes) is fine: extra rows are ignored.
    """
    s_vocab, t_vocab = student.tokenizer.get_vocab(), teacher.tokenizer.get_vocab()
    if s_vocab != t_vocab:
        only_s = len(set(s_vocab.items()) - set(t_vocab.items()))
        raise UserError(
            f"incompatible tokenizers: student '{student.name}' ({len(s_vocab)} tokens) and teacher "
            f"'{teacher.name}' ({len(t_vocab)} tokens) differ in {only_s} entries; both must share one vocabulary"
        )
    size = len(s_vocab)
    for role, lm in (("student", student), ("teacher", teacher)):
        if output_vocab_size(lm.model) < size:
            raise UserError(
                f"{role} '{lm.name}' outputs {output_vocab_size(lm.model)} logits, fewer than its tokenizer's {size} tokens"
            )
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
