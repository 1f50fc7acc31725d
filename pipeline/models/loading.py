"""Loading student/teacher checkpoints with `from_pretrained`, and the device they run on."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.utils import logging as hf_logging

from pipeline.config.sections import ModelSpec
from pipeline.errors import UserError
from pipeline.hub import hub_model_kwargs

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX, Arm BF16)."""
    try:
        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
            return True
    except AttributeError:  # private helpers of torch.cpu: absent in some builds
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("Features") and " bf16" in line for line in fh)
    except OSError:
        return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a ModelSpec.dtype on `device`; "auto" is bfloat16 where the device
    computes it natively (about 2x faster than float32 on such CPUs, half the memory), else float32."""
    if name != "auto":
        return TORCH_DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


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


def looks_local(path: str) -> bool:
    """A local path, not a Hub id ("org/name"): it exists, starts like a path, or its first
    folder exists here (so a typo in `demo_world/studnet` is reported, not tried on the Hub)."""
    first = path.split("/", 1)[0]
    return path.startswith((".", "/", "~")) or os.path.exists(path) or ("/" in path and os.path.isdir(first)) or path.count("/") > 1


def checked_path(spec: ModelSpec) -> str:
    """Local directories must exist; anything else is treated as a Hub id."""
    if looks_local(spec.path):
        path = os.path.expanduser(spec.path)
        if not os.path.isdir(path):
            raise UserError(f"model not found: '{spec.path}' is not a directory")
        return path
    return spec.path


def source_kwargs(spec: ModelSpec) -> dict:
    """Where from_pretrained reads the checkpoint: a local directory, the Hub, or (offline)
    the local cache only; a Hub id that cannot be fetched fails here, at once."""
    return {} if looks_local(spec.path) else {"revision": spec.revision, **hub_model_kwargs(spec.path, spec.revision)}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
    """Load tokenizer and causal LM exactly as real checkpoints are loaded (`from_pretrained`)."""
    device = device or pick_device()
    hf_logging.disable_progress_bar()  # per-shard bars drown the job's own progress
    tokenizer = load_tokenizer(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(checked_path(spec), **source_kwargs(spec),
                                                     dtype=resolve_dtype(spec.dtype, device))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model '{spec.path}': {first_line(exc)}") from None
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, model, tokenizer, device)


def load_tokenizer(spec: ModelSpec):
    """The tokenizer alone: cheap, for checks before any model is loaded."""
    path = checked_path(spec)
    try:
        return AutoTokenizer.from_pretrained(path, **source_kwargs(spec))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer of model '{spec.path}': {first_line(exc)}") from None


def load_text_config(spec: ModelSpec):
    """The model's (text) config alone: no weights loaded."""
    try:
        return AutoConfig.from_pretrained(checked_path(spec), **source_kwargs(spec)).get_text_config()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model config '{spec.path}': {first_line(exc)}") from None


def generation_eos(spec: ModelSpec) -> int | list[int] | None:
    """The end ids of the checkpoint's generation_config.json (chat models list several), or
    None when it has none; no weights are loaded."""
    try:
        return GenerationConfig.from_pretrained(checked_path(spec), **source_kwargs(spec)).eos_token_id
    except (OSError, ValueError):
        return None
