"""The engine interface over a Ray actor that holds an `HFEngine` (`runtime.actors.ModelActor`).

One Ray round trip per call: per step per batch for the mixed prefix, one call for a
whole `generate` (the model decodes alone inside its actor). Tensors cross as numpy; with
`top_k` only each row's k largest probabilities cross, and full rows only on request.
`prefill_async` and `step_async` send a call and return at once, so the caller can run
its own model while this one computes.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import ray
import torch

from pipeline.engine.interface import Completion, Feed, FeatureRequest, NextToken, PendingNext, Prompt, Sampler, prompt_cost
from pipeline.engine.stop import StopRule


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    """Ray hands numpy results over read-only (zero-copy from its object store): copy once."""
    return None if array is None else torch.from_numpy(np.array(array))


class RemoteStep:
    """A call sent to the actor: `result()` waits for it (one NextToken, or with `many` one per
    session the feed named)."""

    def __init__(self, engine: "RemoteEngine", ref, many: bool = False):
        self.engine, self.ref, self.many = engine, ref, many

    def result(self) -> NextToken | list[NextToken]:
        payload = ray.get(self.ref)
        self.engine.calls += 1  # one call, whatever it carried
        return [self.engine._received(p) for p in payload] if self.many else self.engine._received(payload)


class _First:
    """The answer of a one-session feed."""

    def __init__(self, pending: RemoteStep):
        self.pending = pending

    def result(self) -> NextToken:
        return self.pending.result()[0]


class RemoteEngine:
    """`StepEngine` and `Generator` over a ModelActor handle. Counts the bytes of the
    distributions it received (`bytes_received`), the calls it made (`calls`) and the full
    rows it had to fetch besides (`rows_fetched`)."""

    def __init__(self, handle, reuse_preamble: bool):
        self.handle = handle
        self.reuse_preamble = reuse_preamble
        self.caller, self.sent = uuid.uuid4().hex, 0  # the actor runs this caller's calls in the order sent
        self.bytes_received = 0
        self.calls = 0
        self.rows_fetched = 0
        self.transports: dict[str, tuple[int | None, str | None]] = {}  # per session: what answers carry

    def new_caller(self) -> None:
        """Number the next calls afresh under a new caller id: after a failed unit the actor
        may have restarted, and it knows nothing of this caller's earlier calls."""
        self.caller, self.sent = uuid.uuid4().hex, 0

    def _send(self, method: str, *args):
        """One call to the actor's engine, numbered so that it runs after this caller's earlier ones."""
        ref = self.handle.call.remote(self.caller, self.sent, method, *args)
        self.sent += 1
        return ref

    @property
    def tokens_processed(self) -> int:
        return ray.get(self.handle.tokens_processed.remote())

    def _received(self, payload: dict) -> NextToken:
        self.bytes_received += sum(a.nbytes for name, a in payload.items() if a is not None and name != "features")
        bf16 = payload.pop("full_bf16", None)
        full = None if bf16 is None else torch.from_numpy(np.array(bf16)).view(torch.bfloat16).float()
        return NextToken(**{name: _tensor(a) for name, a in payload.items()}, full=full)

    def transport(self, session: str, top_k: int | None = None, full_dtype: str | None = None) -> None:
        """What the session's next answers carry: each row's `top_k` largest probabilities (the
        full rows stay in the actor, `full_probs` fetches them), full rows at `full_dtype`
        ("bfloat16": half the bytes, with each row's exact argmax), or (both None) full float32 logits."""
        self.transports[session] = (top_k, full_dtype)

    def _carried(self, session: str) -> tuple[int | None, str | None]:
        return self.transports.get(session, (None, None))

    def prefill_async(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> RemoteStep:
        return RemoteStep(self, self._send("prefill", session, list(prompts), features, *self._carried(session)))

    def prefill(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> NextToken:
        return self.prefill_async(session, prompts, features).result()

    def extend_many_async(self, calls: Sequence[Feed]) -> RemoteStep:
        """One actor call, whatever it feeds: the actor runs it in one forward, with other
        callers' feeds when they wait beside it; each session's answer crosses with its transport."""
        feeds = [(session, [list(t) for t in tokens], rows, *self._carried(session)) for session, tokens, rows in calls]
        return RemoteStep(self, self._send("feed", feeds), many=True)

    def extend_many(self, calls: Sequence[Feed]) -> list[NextToken]:
        return self.extend_many_async(calls).result()

    def step_async(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> PendingNext:
        return _First(self.extend_many_async([(session, [[t] for t in tokens.tolist()], rows)]))

    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> NextToken:
        return self.step_async(session, tokens, rows).result()

    def extend(self, session: str, tokens: Sequence[list[int]], rows: list[int] | None = None) -> NextToken:
        [out] = self.extend_many([(session, tokens, rows)])
        return out

    def full_probs(self, session: str, rows: list[int]) -> torch.Tensor:
        array = ray.get(self._send("full_probs", session, rows))
        self.calls += 1
        self.rows_fetched += len(rows)
        self.bytes_received += array.nbytes
        return _tensor(array)

    def fork(self, session: str, rows: list[int]) -> None:
        ray.get(self._send("fork", session, rows))

    def clone(self, session: str, new_session: str, rows: list[int]) -> None:
        self._send("clone", session, new_session, rows)  # runs before this caller's later calls

    def close(self, session: str) -> None:
        self.transports.pop(session, None)
        self._send("close", session)  # fire and forget: frees the remote cache

    def prompt_cost(self, prompt: Prompt) -> int:
        return prompt_cost(prompt, self.reuse_preamble)

    def generate(self, prompts: Sequence[Prompt], stop: StopRule, sampler: Sampler | None = None,
                 prefixes: Sequence[list[int]] | None = None) -> list[Completion]:
        return ray.get(self._send("generate", list(prompts), stop, sampler, None if prefixes is None else list(prefixes)))

    def completion_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[list[int]]) -> list[list[float]]:
        return ray.get(self._send("completion_logprobs", list(prompts), list(completions)))
