"""Ray actors: a model engine that serves several callers, and the student decoding workers.

The student worker runs the decoder in process; the teacher lives in its own actor (its
own GPU) and is reached through `RemoteEngine`, once per decoding step per batch, only
for the rows and steps the strategy consults it on.
"""
from __future__ import annotations

import os
from dataclasses import replace

import ray
import torch

from pipeline.config.sections import ModelSpec
from pipeline.data.chat import ChatFormat
from pipeline.data.prompts import PromptTemplate
from pipeline.decoding.decoder import Decoder
from pipeline.engine.backends import build_engine
from pipeline.engine.interface import NextToken
from pipeline.engine.remote import RemoteEngine
from pipeline.engine.stop import StopRule
from pipeline.models.loading import pick_device
from pipeline.runtime.engine_queue import EngineQueue
from pipeline.runtime.prompting import run_template


def _limit_threads() -> None:
    """Several actors share a node's cores: use as many threads as CPUs Ray granted."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def placement_info(engine) -> dict:
    """Where this actor landed: node, Ray's GPU ids, the torch device and dtype it really uses."""
    ctx = ray.get_runtime_context()
    model = getattr(engine, "model", None)
    return {
        "node_id": ctx.get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "device": str(pick_device()),
        "dtype": str(getattr(model, "dtype", "unknown")).removeprefix("torch."),
        "pid": os.getpid(),
    }


def wire(out: NextToken, top_k: int | None, full_dtype: str | None = None) -> dict:
    """What a NextToken sends back: the top-k only when asked (the full rows stay here), or
    full rows as bfloat16 probabilities (numpy has no bfloat16: they cross as int16 bits)."""
    if full_dtype not in (None, "bfloat16"):
        raise ValueError(f"full rows cross as float32 logits or bfloat16 probabilities, not {full_dtype!r}")
    if full_dtype == "bfloat16" and not top_k:
        probs = out.probs
        return {"features": None if out.features is None else out.features.cpu().numpy(),
                "full_bf16": probs.to(torch.bfloat16).view(torch.int16).cpu().numpy(),
                "top_ids": probs.argmax(dim=-1, keepdim=True).to(torch.int32).cpu().numpy()}
    if top_k:
        out = out.compact(top_k)
        out.top_ids = out.top_ids.to(torch.int32)  # half the bytes; a vocabulary fits easily
    return {name: None if value is None else value.cpu().numpy()
            for name, value in (("logits", out.logits), ("features", out.features),
                                ("top_probs", out.top_probs), ("top_ids", out.top_ids))}


# what a caller may ask of the engine behind a ModelActor, besides `feed` (batched apart)
ENGINE_CALLS = {
    "prefill": lambda engine, session, prompts, features, top_k, full_dtype: wire(engine.prefill(session, prompts, features),
                                                                                top_k, full_dtype),
    "full_probs": lambda engine, session, rows: engine.full_probs(session, rows).cpu().numpy(),
    "fork": lambda engine, session, rows: engine.fork(session, rows),
    "clone": lambda engine, session, new_session, rows: engine.clone(session, new_session, rows),
    "close": lambda engine, session: engine.close(session),
    "generate": lambda engine, prompts, stop, sampler, prefixes: engine.generate(prompts, stop, sampler, prefixes),
    "completion_logprobs": lambda engine, prompts, completions: engine.completion_logprobs(prompts, completions),
}


@ray.remote
class ModelActor:
    """A model (the teacher, or a teaching assistant) behind the engine interface on its own
    resources; sessions keep each caller's KV cache, so one actor serves several students.
    An async actor: calls wait in an `EngineQueue`, which keeps each caller's order and runs
    the steps of several students that wait together as one forward."""

    def __init__(self, spec: ModelSpec, vocab_size: int, reuse_preamble: bool, batch_wait_s: float | None = 0.002):
        _limit_threads()
        self.engine = build_engine(spec, vocab_size, reuse_preamble)  # `spec.backend`, transformers by default
        self.queue = EngineQueue(self.engine, batch_wait_s)

    async def call(self, caller: str, seq: int, method: str, *args):
        """The engine's `method(*args)` (see ENGINE_CALLS), as the caller's `seq`-th call. A
        `feed` (steps and catch-ups of one or several sessions, each with the transport its
        answer crosses with) waits in the queue to share a forward with other callers' feeds."""
        if method == "feed":
            [feeds] = args
            transports = [(top_k, full_dtype) for *_, top_k, full_dtype in feeds]
            return await self.queue.feed(caller, seq, [tuple(f[:3]) for f in feeds],
                                         lambda outs: [wire(out, *how) for out, how in zip(outs, transports)])
        return await self.queue.call(caller, seq, lambda engine: ENGINE_CALLS[method](engine, *args))

    def placement(self) -> dict:
        return placement_info(self.engine)

    def tokens_processed(self) -> int:
        return self.engine.tokens_processed

    def batching(self) -> dict:
        """Feeds (steps, catch-ups) received and model forwards run for them (fewer when feeds were batched)."""
        return {"feed_calls": self.queue.feed_calls, "feed_forwards": self.queue.feed_forwards}


@ray.remote(concurrency_groups={"progress": 1})
class DecodeWorker:
    """A student decoding worker, with a handle on its teacher: turns work units into rows.
    Units run one at a time; `student_tokens` and `ready` answer from their own thread while one runs.
    `prompt` is the run's template; a unit that names its own (a run over several
    benchmarks) is encoded with that one and ends at its stop strings."""

    def __init__(self, student: ModelSpec, teacher_name: str, vocab_size: int, prompt: str, stop: StopRule, reuse_preamble: bool,
                 teacher_top_k: int | None = 32, chat: ChatFormat | None = None):
        _limit_threads()
        engine = build_engine(student, vocab_size, reuse_preamble)
        self.chat = chat
        self.template, self.stop = run_template(prompt, chat), stop
        self.templates: dict[str, PromptTemplate] = {prompt: self.template}
        teacher = RemoteEngine(ray.get_actor(teacher_name), reuse_preamble)
        self.decoder = Decoder(engine, teacher, engine.tokenizer, stop, teacher_top_k)
        self.worker_id = ray.get_runtime_context().get_actor_id()
        self.node_id = ray.get_runtime_context().get_node_id()

    def run(self, unit) -> list[dict]:
        """Rows of one work unit (an evaluation batch, a label batch, ...)."""
        self.decoder.teacher.new_caller()
        template = self.template_for(getattr(unit, "prompt", None))
        # the stop strings belong to the template: math's "\nProblem:" ends none of gsm8k's rows
        self.decoder.stop = self.stop if template is self.template else replace(self.stop, stop_strings=template.stop_strings)
        return unit.run(self.decoder, template, self.worker_id, self.node_id)

    def template_for(self, prompt: str | None) -> PromptTemplate:
        """The template a unit names, loaded once per worker; the run's when it names none."""
        if prompt is None:
            return self.template
        if prompt not in self.templates:
            self.templates[prompt] = run_template(prompt, self.chat)
        return self.templates[prompt]

    def placement(self) -> dict:
        return placement_info(self.decoder.student)

    @ray.method(concurrency_group="progress")
    def ready(self) -> bool:
        """Whether a unit sent now can run: this worker is up (answering proves it) and so is
        its teacher, which may still be restarting after a death that failed this worker's unit."""
        try:
            ray.get(self.decoder.teacher.handle.__ray_ready__.remote(), timeout=5)
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            return False
        return True

    @ray.method(concurrency_group="progress")
    def student_tokens(self) -> int:
        """Live counter of the unit in progress and all before it: tokens the student was fed."""
        return self.decoder.student.tokens_processed

    def pid(self) -> int:
        return os.getpid()
