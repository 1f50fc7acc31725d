"""How much host memory each actor declares to Ray, so Ray does not pack more models on a
node than its memory holds (and its memory monitor does not have to kill one mid-run).

On CPU an actor holds its weights at the resolved dtype, the KV cache of the rows it decodes
at once, and their logits; on a GPU those live in GPU memory and the host holds the weights
only while loading. `ray.<role>.memory_gb` overrides the estimate (0: declare nothing).
"""
from __future__ import annotations

import torch

from pipeline.config import RunConfig
from pipeline.models.facts import ModelFacts
from pipeline.models.loading import resolve_dtype

GIB = 2**30
RUNTIME_BYTES = GIB // 2  # the Python process, torch and transformers themselves
MARGIN = 1.25  # allocator slack and transient copies
FAN_OUT = 4  # rows per example at once: α-tree leaves, typically 1-3 (CoT-decoding: its k)


def dtype_bytes(dtype: str, on_gpu: bool) -> int:
    """Bytes per value of a ModelSpec dtype: "auto" resolves as on this machine's CPU, or to
    bfloat16 on a GPU (the driver may run on a CPU head that says nothing of the GPU nodes)."""
    if dtype == "auto" and on_gpu:
        return 2
    return resolve_dtype(dtype, torch.device("cpu")).itemsize


def actor_bytes(facts: ModelFacts, dtype: str, on_gpu: bool, rows: int, positions: int) -> int:
    """Host memory one model actor needs (see the module's note)."""
    width = dtype_bytes(dtype, on_gpu)
    weights = facts.num_parameters * width
    if on_gpu:
        return int((weights + RUNTIME_BYTES) * MARGIN)
    kv = rows * positions * facts.kv_values_per_token * width
    logits = rows * facts.output_size * 4 * 3  # float32 logits, probabilities, and a working copy
    return int((weights + kv + logits + RUNTIME_BYTES) * MARGIN)


def declared_memory(config: RunConfig, student: ModelFacts, teacher: ModelFacts, longest_prompt: int,
                    cluster_has_gpus: bool) -> dict[str, int]:
    """Bytes each role declares ("student", "teacher"); 0: nothing declared."""
    positions = longest_prompt + config.decoding.max_new_tokens
    branches = max([FAN_OUT] + [int(s.params.get("k", 0)) for s in config.strategies if s.name == "cot_decoding"])
    rows = {"student": config.decoding.batch_size * branches,
            "teacher": config.decoding.batch_size * branches * config.ray.students_per_teacher}
    declared = {}
    for role, facts, spec, resources in (("student", student, config.student, config.ray.student),
                                         ("teacher", teacher, config.teacher, config.ray.teacher)):
        on_gpu = cluster_has_gpus and resources.num_gpus > 0
        declared[role] = (int(resources.memory_gb * GIB) if resources.memory_gb is not None
                          else actor_bytes(facts, spec.dtype, on_gpu, rows[role], positions))
    return declared
