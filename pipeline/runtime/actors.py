"""Ray actors: a model engine that serves several callers, and the student decoding workers.

The student worker runs the decoder in process; the teacher lives in its own actor (its
own GPU) and is reached through `RemoteEngine`, once per decoding step per batch, only
for the rows and steps the strategy consults it on.
"""
from __future__ import annotations

import os

import numpy as np
import ray
import torch

from pipeline.config.sections import ModelSpec
from pipeline.data.prompts import load_template
from pipeline.decoding.decoder import Decoder
from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import Completion, FeatureRequest, NextToken, Prompt, Sampler
from pipeline.engine.remote import RemoteEngine
from pipeline.engine.stop import StopRule
from pipeline.models.loading import load_model, pick_device


def _limit_threads() -> None:
    """Several actors share a node's cores: use as many threads as CPUs Ray granted."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def placement_info(engine: HFEngine) -> dict:
    """Where this actor landed: node, Ray's GPU ids, the torch device and dtype it really uses."""
    ctx = ray.get_runtime_context()
    return {
        "node_id": ctx.get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "device": str(pick_device()),
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "pid": os.getpid(),
    }


def wire(out: NextToken, top_k: int | None) -> dict:
    """What a NextToken sends back: the top-k only when asked (the full rows stay here)."""
    if top_k:
        out = out.compact(top_k)
        out.top_ids = out.top_ids.to(torch.int32)  # half the bytes; a vocabulary fits easily
    return {name: None if value is None else value.cpu().numpy()
            for name, value in (("logits", out.logits), ("features", out.features),
                                ("top_probs", out.top_probs), ("top_ids", out.top_ids))}


@ray.remote
class ModelActor:
    """A model (the teacher, or a teaching assistant) behind the engine interface on its own
    resources; sessions keep each caller's KV cache, so one actor serves several students."""

    def __init__(self, spec: ModelSpec, vocab_size: int, reuse_preamble: bool):
        _limit_threads()
        self.engine = HFEngine(load_model(spec), vocab_size, reuse_preamble)

    def prefill(self, session: str, prompts: list[Prompt], features: FeatureRequest | None, top_k: int | None) -> dict:
        return wire(self.engine.prefill(session, prompts, features), top_k)

    def step(self, session: str, tokens: np.ndarray, rows: list[int] | None, top_k: int | None) -> dict:
        return wire(self.engine.step(session, torch.tensor(tokens), rows), top_k)

    def full_probs(self, session: str, rows: list[int]) -> np.ndarray:
        return self.engine.full_probs(session, rows).cpu().numpy()

    def fork(self, session: str, rows: list[int]) -> None:
        self.engine.fork(session, rows)

    def close(self, session: str) -> None:
        self.engine.close(session)

    def generate(self, prompts: list[Prompt], stop: StopRule, sampler: Sampler | None) -> list[Completion]:
        return self.engine.generate(prompts, stop, sampler)

    def completion_logprobs(self, prompts: list[Prompt], completions: list[list[int]]) -> list[list[float]]:
        return self.engine.completion_logprobs(prompts, completions)

    def placement(self) -> dict:
        return placement_info(self.engine)

    def tokens_processed(self) -> int:
        return self.engine.tokens_processed


@ray.remote(concurrency_groups={"progress": 1})
class DecodeWorker:
    """A student decoding worker, with a handle on its teacher: turns work units into rows.
    Units run one at a time; `progress` answers from its own thread while one runs."""

    def __init__(self, student: ModelSpec, teacher_name: str, vocab_size: int, prompt: str, stop: StopRule, reuse_preamble: bool,
                 teacher_top_k: int | None = 32):
        _limit_threads()
        lm = load_model(student)
        self.template = load_template(prompt)
        teacher = RemoteEngine(ray.get_actor(teacher_name), reuse_preamble)
        self.decoder = Decoder(HFEngine(lm, vocab_size, reuse_preamble), teacher, lm.tokenizer, stop, teacher_top_k)
        self.worker_id = ray.get_runtime_context().get_actor_id()
        self.node_id = ray.get_runtime_context().get_node_id()

    def run(self, unit) -> list[dict]:
        """Rows of one work unit (an evaluation batch, a label batch, ...)."""
        return unit.run(self.decoder, self.template, self.worker_id, self.node_id)

    def placement(self) -> dict:
        return placement_info(self.decoder.student)

    @ray.method(concurrency_group="progress")
    def progress(self) -> dict:
        """Live counters of the unit in progress and all before it: tokens the student was fed."""
        teacher = self.decoder.teacher
        return {"student_tokens": self.decoder.student.tokens_processed,
                "teacher_calls": teacher.calls, "teacher_bytes": teacher.bytes_received}

    def pid(self) -> int:
        return os.getpid()
