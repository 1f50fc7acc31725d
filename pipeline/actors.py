"""Ray actors: a teacher that serves several students, and the student decoding workers.

The student worker runs the shared decoding loop in process; the teacher lives in
its own actor (its own GPU) and is reached once per decoding step per batch, only
for the rows and steps the strategy consults it on.
"""
from __future__ import annotations

import os

import numpy as np
import ray
import torch

from pipeline.decoding import Decoder, StopRule
from pipeline.models import ModelSpec, eos_token_ids, load_model, pick_device
from pipeline.prompts import load_template
from pipeline.runner import ModelRunner, Prompt


def _limit_threads() -> None:
    """Several actors share a node's cores: use as many threads as CPUs Ray granted."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def placement_info() -> dict:
    """Where this actor landed: node, Ray's GPU ids, and the torch device it really uses."""
    ctx = ray.get_runtime_context()
    return {
        "node_id": ctx.get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "device": str(pick_device()),
        "pid": os.getpid(),
    }


@ray.remote
class ModelActor:
    """A model (the teacher, or a teaching assistant) behind the runner API on its own
    resources; sessions keep each caller's KV cache, so one actor serves several students."""

    def __init__(self, spec: ModelSpec, vocab_size: int, reuse_preamble: bool):
        _limit_threads()
        self.runner = ModelRunner(load_model(spec), vocab_size, reuse_preamble)

    def prefill(self, session: str, prompts: list[Prompt]) -> np.ndarray:
        return self.runner.prefill(session, prompts).cpu().numpy()

    def step(self, session: str, tokens: np.ndarray, rows: list[int] | None) -> np.ndarray:
        return self.runner.step(session, torch.from_numpy(tokens), rows).cpu().numpy()

    def close(self, session: str) -> None:
        self.runner.close(session)

    def completion_logprobs(self, prompts: list[Prompt], completions: list[list[int]]) -> list[list[float]]:
        return self.runner.completion_logprobs(prompts, completions)

    def placement(self) -> dict:
        return placement_info()

    def tokens_processed(self) -> int:
        return self.runner.tokens_processed


class RemoteRunner:
    """Runner API over a ModelActor handle: one Ray round trip per call."""

    def __init__(self, handle, reuse_preamble: bool):
        self.handle = handle
        self.reuse_preamble = reuse_preamble

    def prefill(self, session: str, prompts: list[Prompt]) -> torch.Tensor:
        return torch.from_numpy(ray.get(self.handle.prefill.remote(session, prompts)))

    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        return torch.from_numpy(ray.get(self.handle.step.remote(session, tokens.cpu().numpy(), rows)))

    def close(self, session: str) -> None:
        self.handle.close.remote(session)  # fire and forget: frees the teacher's cache

    def completion_logprobs(self, prompts: list[Prompt], completions: list[list[int]]) -> list[list[float]]:
        return ray.get(self.handle.completion_logprobs.remote(prompts, completions))

    def prompt_cost(self, prompt: Prompt) -> int:
        preamble, suffix = prompt
        return len(suffix) + (0 if self.reuse_preamble else len(preamble))


@ray.remote
class DecodeWorker:
    """A student decoding worker, with a handle on its teacher: turns work units into rows."""

    def __init__(self, student: ModelSpec, teacher_name: str, vocab_size: int, prompt: str, max_new_tokens: int, reuse_preamble: bool):
        _limit_threads()
        lm = load_model(student)
        self.template = load_template(prompt)
        stop = StopRule(frozenset(eos_token_ids(lm)), self.template.stop_strings, max_new_tokens)
        self.decoder = Decoder(
            ModelRunner(lm, vocab_size, reuse_preamble),
            RemoteRunner(ray.get_actor(teacher_name), reuse_preamble),
            lm.tokenizer,
            stop,
        )
        self.worker_id = ray.get_runtime_context().get_actor_id()
        self.node_id = ray.get_runtime_context().get_node_id()

    def run(self, unit) -> list[dict]:
        """Rows of one work unit (an evaluation batch, a label batch, ...)."""
        return unit.run(self.decoder, self.template, self.worker_id, self.node_id)

    def placement(self) -> dict:
        return placement_info()

    def pid(self) -> int:
        return os.getpid()
