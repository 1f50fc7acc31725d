"""The engine interface: what a model backend must offer the decoding layer.

Two roles, as lm-evaluation-harness's `LM` interface does it for its backends:

- `StepEngine`: the mixed prefix. Batched prefill (optionally with hidden-state
  features), one step at a time with the KV cache kept under a session id (or several
  tokens per row at once: a catch-up), rows forked or dropped between steps, close. Every call returns a `NextToken`: the
  next-token distribution of the batch.
- `Generator`: plain continuation and scoring. Greedy or sampled decoding of a batch
  of prompts to the stop rule, and completion log-probabilities.

`pipeline.engine.hf.HFEngine` (transformers, in process) and
`pipeline.engine.remote.RemoteEngine` (the same engine behind a Ray actor) implement
both in full. An engine whose `keeps_sessions` is false gets every plain continuation
after the mixed prefix through `Generator.generate` with the prefix as input (a backend
with prefix caching, such as vLLM, serves those without recomputing the prompt); the
transformers engine continues in its session's KV cache. Backends are picked by name
(`pipeline.engine.backends`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

Prompt = tuple[list[int], list[int]]  # (preamble ids, question suffix ids)
# one session's part of a feed: (session, tokens for each of its rows (empty: not fed), rows to keep
# first, re-indexing the session as `fork` does, or None)
Feed = tuple[str, Sequence[list[int]], "list[int] | None"]
# picks each active row's token from its next-token probabilities [R, V]:
# (probabilities, tokens generated so far per row, row indices) -> token ids [R]
Sampler = Callable[[torch.Tensor, list[int], list[int]], torch.Tensor]


class SessionLost(RuntimeError):
    """A step names a session the engine no longer holds (expired, evicted, or the engine
    restarted): the caller's work unit must start over, nothing is wrong with its input."""


@dataclass(frozen=True)
class FeatureRequest:
    """Hidden states to read at prefill: indices into hidden_states (0 = embeddings,
    -1 = last layer), of each prompt's last token, concatenated or averaged."""

    layers: tuple[int, ...] = (-1,)
    pool: str = "concat"  # concat | mean

    @staticmethod
    def merged(requests: Sequence["FeatureRequest | None"]) -> "FeatureRequest | None":
        """One request covering every layer of `requests` (concatenated), for a prefill shared by them."""
        layers = tuple(dict.fromkeys(i for r in requests if r is not None for i in r.layers))
        return FeatureRequest(layers, "concat") if layers else None

    def take(self, features: torch.Tensor, merged: "FeatureRequest") -> torch.Tensor:
        """This request's features [B, D'] out of those a `merged` request returned [B, L·D]."""
        states = features.view(features.shape[0], len(merged.layers), -1)[:, [merged.layers.index(i) for i in self.layers]]
        return states.mean(dim=1) if self.pool == "mean" else states.flatten(1)


@dataclass
class NextToken:
    """The next-token distribution of a batch: float32 logits over the vocabulary shared by
    student and teacher, [B, V], and at prefill the requested features, [B, D]. A remote
    engine asked for `top_k` sends only each row's k largest probabilities (largest first)
    and their token ids, [B, k]: 0.4 KB a row at k = 32 instead of 0.6 MB at a 152k
    vocabulary; the full rows stay behind it (`StepEngine.full_probs`)."""

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    top_probs: torch.Tensor | None = None
    top_ids: torch.Tensor | None = None
    full: torch.Tensor | None = None  # the probabilities themselves, where they crossed the wire instead of logits

    @property
    def probs(self) -> torch.Tensor:
        if self.full is not None:
            return self.full
        if self.logits is None:
            raise ValueError("this NextToken holds the top-k only: ask the engine for full_probs")
        return torch.softmax(self.logits.float(), dim=-1)

    def compact(self, k: int) -> "NextToken":
        """The top-k form of a full distribution (what crosses the wire)."""
        top = self.probs.topk(min(k, self.logits.shape[-1]), dim=-1)
        return NextToken(features=self.features, top_probs=top.values, top_ids=top.indices)


@dataclass
class Completion:
    """One row of a decode: its tokens, why it stopped, and the tokens the generating
    model was fed for it (prompt cost plus one per step)."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # eos | stop | length
    tokens_processed: int = 0


def prompt_cost(prompt: Prompt, reuse_preamble: bool) -> int:
    """Tokens an engine processes for one prompt: a cached preamble is paid once per engine, not here."""
    preamble, suffix = prompt
    return len(suffix) + (0 if reuse_preamble else len(preamble))


class PendingNext(Protocol):
    """A step sent to an engine and not yet waited for."""

    def result(self) -> NextToken: ...


@dataclass
class Ready:
    """A step an in-process engine has already computed."""

    value: NextToken

    def result(self) -> NextToken:
        return self.value


@runtime_checkable
class StepEngine(Protocol):
    """Also offers `tokens_processed`: tokens fed to the model so far, all sessions. What an
    answer carries across a process boundary is the remote adapter's business
    (`RemoteEngine.transport(session, top_k, full_dtype)`, set through
    `pipeline.decoding.teacher_next.ask_for`); an in-process engine answers full rows."""

    def prefill(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> NextToken:
        """Encode a batch of prompts under a new session; the distribution after each prompt."""

    def prefill_async(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> PendingNext:
        """`prefill`, returning before the result is needed (see `step_async`)."""

    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> NextToken:
        """`fork(session, rows)` when rows are given, then feed one token per row."""

    def step_async(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> PendingNext:
        """`step`, returning before the result is needed: a remote engine computes it while
        the caller steps its own model."""

    def extend(self, session: str, tokens: Sequence[list[int]], rows: list[int] | None = None) -> NextToken:
        """`fork(session, rows)` when rows are given, then feed each row its own tokens (an
        empty list: none) in one call, a catch-up prefill on the kept cache; the distribution
        after each fed row's last token, fed rows only, in order."""

    def extend_many(self, calls: Sequence[Feed]) -> list[NextToken]:
        """`extend` for several sessions (each once) in one call and, where the engine can, one
        forward: a step of several strategies' rows, or the catch-ups of all rows that consult
        at a step. One answer per call, its fed rows in order."""

    def extend_many_async(self, calls: Sequence[Feed]) -> PendingNext:
        """`extend_many`, returning before the result is needed (its `result()` is the list)."""

    def full_probs(self, session: str, rows: list[int]) -> torch.Tensor:
        """Full float32 probabilities [len(rows), V] of the session's last distribution."""

    def fork(self, session: str, rows: list[int]) -> None:
        """Re-index the session's batch: drop rows, or repeat a row to branch it."""

    def clone(self, session: str, new_session: str, rows: list[int]) -> None:
        """A new session holding a copy of `rows` of this one (its cache and last distribution),
        e.g. one prefill shared by several strategies; both go on independently."""

    def close(self, session: str) -> None:
        """Free the session's cache (a no-op for unknown sessions)."""

    def prompt_cost(self, prompt: Prompt) -> int:
        """Tokens the engine processes for this prompt (a cached preamble is not counted)."""


@runtime_checkable
class Generator(Protocol):
    def generate(self, prompts: Sequence[Prompt], stop, sampler: Sampler | None = None,
                 prefixes: Sequence[list[int]] | None = None) -> list[Completion]:
        """Decode each prompt alone with this model until `stop` (a `StopRule`): greedy, or
        with `sampler` choosing the tokens. With `prefixes`, each row continues after its
        prefix (tokens generated already, which count against the stop rule's budget and
        open the returned `token_ids`): a backend with prefix caching serves that without
        recomputing the prompt."""

    def completion_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[list[int]]) -> list[list[float]]:
        """Log-probability of every completion token given its prompt (teacher forcing)."""
