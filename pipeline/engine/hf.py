"""The in-process engine: one transformers causal LM behind the engine interface.

The state of a batch lives inside the engine under a session id, so the same API works
in process and behind a Ray actor: the caller sends token ids and gets the next-token
distribution back, once per step per batch. Only the last position's logits are ever
computed (`logits_to_keep=1`), and only the requested hidden-state layers are kept.
"""
from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicLayer

from pipeline.engine.interface import Completion, FeatureRequest, NextToken, Prompt, Ready, Sampler, prompt_cost
from pipeline.engine.sessions import SessionStore
from pipeline.engine.steps import decode_steps
from pipeline.engine.stop import StopRule
from pipeline.models.loading import LoadedModel


@dataclass
class _Session:
    cache: object
    attention_mask: torch.Tensor  # [B, L]: 1 for real tokens, 0 for padding
    next_position: torch.Tensor  # [B]: position id of the next token
    last_logits: torch.Tensor | None = None  # [B, V] of the last call, for full_probs


def stackable(state: _Session) -> bool:
    """Whether a session's cache is a plain per-layer key/value cache that padding and
    stacking keep exact (not a sliding-window or quantized one)."""
    return all(type(layer) is DynamicLayer for layer in state.cache.layers)


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def stack_states(states: Sequence[_Session]) -> tuple[object, torch.Tensor, torch.Tensor]:
    """One batch out of several sessions: (cache, attention mask, next positions). Shorter
    sessions are padded on the left, where their masks are 0."""
    width = max(s.attention_mask.shape[1] for s in states)
    cache = copy.copy(states[0].cache)
    cache.layers = [copy.copy(layer) for layer in states[0].cache.layers]
    for i, layer in enumerate(cache.layers):
        layer.keys = torch.cat([_left_pad(s.cache.layers[i].keys, width, 2) for s in states])
        layer.values = torch.cat([_left_pad(s.cache.layers[i].values, width, 2) for s in states])
    mask = torch.cat([_left_pad(s.attention_mask, width, 1) for s in states])
    return cache, mask, torch.cat([s.next_position for s in states])


def compact(state: _Session) -> None:
    """Drop the padding between each row's cached tokens: its real entries, in order, moved to
    the right end of a cache as wide as the longest row. The same attention (positions are
    baked into the keys, and the mask moves with them), up to the order of float sums."""
    real = state.attention_mask.bool()
    width = int(real.sum(dim=1).max())
    # per row, pads first then real entries, each in order: the last `width` are every real entry
    keep = torch.argsort(real.to(torch.int8), dim=1, stable=True)[:, real.shape[1] - width:]
    for layer in state.cache.layers:
        index = keep[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
        layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)
    state.attention_mask = state.attention_mask.gather(1, keep)


def slice_cache(cache, rows: slice):
    """The rows of a stacked cache, as views (the next step's concatenation copies them)."""
    part = copy.copy(cache)
    part.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in part.layers:
        layer.keys, layer.values = layer.keys[rows], layer.values[rows]
    return part


class HFEngine:
    """`StepEngine` and `Generator` over a transformers causal LM.

    `vocab_size` limits logits to the range shared with the other model.
    `reuse_preamble` computes the few-shot preamble's KV cache once and copies it
    into every batch instead of re-encoding it per question. In process, handing over full
    float32 rows costs nothing, so it has no transport to choose (a strategy that reads
    them at bfloat16 rounds them itself).
    """

    def __init__(self, lm: LoadedModel, vocab_size: int | None = None, reuse_preamble: bool = True,
                 sessions: SessionStore | None = None):
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.device = lm.device
        self.vocab_size = vocab_size
        self.reuse_preamble = reuse_preamble
        self.pad_id = lm.tokenizer.pad_token_id or 0
        self.tokens_processed = 0
        self.step_forwards = 0  # model forwards of `step` and `step_many`
        self.sessions: SessionStore[_Session] = sessions if sessions is not None else SessionStore()
        self._preamble: tuple[tuple[int, ...], object] | None = None
        # the last step_many round: its sessions, the stacked cache, each session's slice of it
        self._stack: tuple[tuple[str, ...], object, list] | None = None

    # -- StepEngine -------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> NextToken:
        preambles = {tuple(p) for p, _ in prompts}
        if self.reuse_preamble and len(preambles) == 1 and next(iter(preambles)):
            out, state = self._prefill_after_preamble(list(next(iter(preambles))), [s for _, s in prompts], features)
        else:
            out, state = self._prefill_full([p + s for p, s in prompts], features)
        state.last_logits = self._last_logits(out.logits)
        self.sessions.put(session, state)
        return NextToken(state.last_logits, self._features(out, features))

    def prefill_async(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> Ready:
        return Ready(self.prefill(session, prompts, features))

    def step_async(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> Ready:
        return Ready(self.step(session, tokens, rows))

    def full_probs(self, session: str, rows: list[int]) -> torch.Tensor:
        state = self.sessions.get(session)
        return torch.softmax(state.last_logits[rows].float(), dim=-1)

    @torch.inference_mode()
    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> NextToken:
        state = self.sessions.get(session)
        if rows is not None:
            self._select(state, rows)
        tokens = tokens.to(self.device).view(-1, 1)
        state.attention_mask = torch.cat([state.attention_mask, torch.ones_like(tokens)], dim=1)
        out = self.model(
            input_ids=tokens, attention_mask=state.attention_mask, position_ids=state.next_position.view(-1, 1),
            cache=state.cache, use_cache=True,
        )
        state.cache = out.cache
        state.next_position = state.next_position + 1
        state.last_logits = self._last_logits(out.logits)
        self.tokens_processed += tokens.shape[0]
        self.step_forwards += 1
        return NextToken(state.last_logits)

    @torch.inference_mode()
    def step_many(self, calls: Sequence[tuple[str, torch.Tensor, list[int] | None]]) -> list[NextToken]:
        """`step` for several sessions (session, tokens, rows) in one forward: their caches are
        left-padded to one length and stacked (the padding masked, each row keeping its own
        positions), then split back. Caches that cannot be stacked step one by one."""
        states = [self.sessions.get(session) for session, _, _ in calls]
        if len(calls) == 1 or len({s for s, _, _ in calls}) < len(calls) or not all(map(stackable, states)):
            return [self.step(*call) for call in calls]
        # stacked in the sessions' order, whatever order the callers' steps arrived in, so a
        # round over the same sessions can reuse the last round's stack
        order = sorted(range(len(calls)), key=lambda i: calls[i][0])
        calls, states = [calls[i] for i in order], [states[i] for i in order]
        for state, (_, _, rows) in zip(states, calls):
            if rows is not None:
                self._select(state, rows)
        names = tuple(session for session, _, _ in calls)
        cache, mask, positions = self._kept_stack(names, states) or stack_states(states)
        self._stack = None  # the forward extends the stack in place: kept again only once it succeeds
        tokens = torch.cat([t.to(self.device).view(-1, 1) for _, t, _ in calls])
        mask = torch.cat([mask, torch.ones_like(tokens)], dim=1)
        out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions.view(-1, 1), cache=cache, use_cache=True)
        logits = self._last_logits(out.logits)
        self.tokens_processed += tokens.shape[0]
        self.step_forwards += 1
        results, start = [None] * len(calls), 0
        for i, state in zip(order, states):
            rows = slice(start, start + state.next_position.shape[0])
            start = rows.stop
            state.cache = slice_cache(out.cache, rows)
            state.attention_mask, state.last_logits = mask[rows], logits[rows]
            state.next_position = state.next_position + 1
            results[i] = NextToken(state.last_logits)
        self._stack = (names, out.cache, [(s.cache, s.cache.layers[0].keys) for s in states])
        return results

    @torch.inference_mode()
    def extend(self, session: str, tokens: Sequence[list[int]], rows: list[int] | None = None) -> NextToken:
        """`fork(session, rows)` when rows are given, then feed each row its own tokens (none
        for some) in one forward: [cache][padding][tokens], the padding masked and positions
        going on from each row's own, so a fed row sees exactly its text so far."""
        state = self.sessions.get(session)
        if not stackable(state):
            raise ValueError("extend: this model's KV cache (sliding-window or quantized) cannot hold padding between "
                             "tokens: a catch-up needs a plain per-layer cache")
        if rows is not None:
            self._select(state, rows)
        fed = [i for i, row in enumerate(tokens) if row]
        if len(tokens) != state.next_position.shape[0] or not fed:
            raise ValueError(f"extend: one token list per row of the session ({state.next_position.shape[0]}), some not empty")
        ids, new = self._left_pad([list(row) for row in tokens])
        state.attention_mask = torch.cat([state.attention_mask, new], dim=1)
        positions = state.next_position.view(-1, 1) + (new.cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=state.attention_mask, position_ids=positions,
                         cache=state.cache, use_cache=True, logits_to_keep=1)
        state.cache = out.cache
        state.next_position = state.next_position + new.sum(dim=1)
        logits = self._last_logits(out.logits)
        state.last_logits = torch.where(new[:, -1:].bool(), logits, state.last_logits)
        self.tokens_processed += int(new.sum())
        if 2 * int(state.attention_mask.sum(dim=1).max()) <= state.attention_mask.shape[1]:
            compact(state)  # rows fed at different times: the cache is twice as wide as its longest row
        return NextToken(logits[fed])

    def _kept_stack(self, names: tuple[str, ...], states: list[_Session]):
        """The last round's stacked cache, when this round steps the same sessions and none
        was touched since (each still holds the very slice it was given): no re-stacking copy."""
        if self._stack is None or self._stack[0] != names:
            return None
        _, cache, slices = self._stack
        if not all(s.cache is c and s.cache.layers[0].keys is k for s, (c, k) in zip(states, slices)):
            return None
        return cache, torch.cat([s.attention_mask for s in states]), torch.cat([s.next_position for s in states])

    def fork(self, session: str, rows: list[int]) -> None:
        self._select(self.sessions.get(session), rows)

    def clone(self, session: str, new_session: str, rows: list[int]) -> None:
        state = self.sessions.get(session)
        # new tensors come from index_select only: the source's cache is shared, not copied first
        cache = copy.copy(state.cache)
        cache.layers = [copy.copy(layer) for layer in state.cache.layers]
        twin = _Session(cache, state.attention_mask, state.next_position, state.last_logits)
        self._select(twin, rows)
        self.sessions.put(new_session, twin)

    def close(self, session: str) -> None:
        self.sessions.pop(session)
        if self._stack is not None and session in self._stack[0]:
            self._stack = None  # its memory goes with the sessions

    def prompt_cost(self, prompt: Prompt) -> int:
        return prompt_cost(prompt, self.reuse_preamble)

    # -- Generator ----------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], stop: StopRule, sampler: Sampler | None = None,
                 prefixes: Sequence[list[int]] | None = None) -> list[Completion]:
        prefixes = prefixes or [[] for _ in prompts]
        rows = [Completion(token_ids=list(x), tokens_processed=self.prompt_cost(p) + len(x)) for p, x in zip(prompts, prefixes)]
        session = uuid.uuid4().hex
        try:
            p = self.prefill(session, [(pre, [*suffix, *x]) for (pre, suffix), x in zip(prompts, prefixes)]).probs
            decode_steps(self, session, p, rows, list(range(len(rows))), stop, self.tokenizer, sampler)
        finally:
            self.close(session)
        return rows

    @torch.inference_mode()
    def completion_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[list[int]]) -> list[list[float]]:
        seqs = [p + s + c for (p, s), c in zip(prompts, completions)]
        ids, mask = self._left_pad(seqs)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        keep = max(len(c) for c in completions) + 1  # only the logits that score completion tokens
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        self.tokens_processed += int(mask.sum())
        logits = out.logits.float()
        if self.vocab_size is not None:
            logits = logits[..., : self.vocab_size]
        logp = torch.log_softmax(logits, dim=-1)
        scores = []
        for i, completion in enumerate(completions):
            n = len(completion)
            targets = ids[i, ids.shape[1] - n :].unsqueeze(-1)
            scores.append(logp[i, keep - n - 1 : keep - 1].gather(-1, targets).squeeze(-1).tolist() if n else [])
        return scores

    # -- internals ----------------------------------------------------------
    def _last_logits(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1, :]
        if self.vocab_size is not None:
            last = last[:, : self.vocab_size]
        return last.float()

    @staticmethod
    def _features(out, request: FeatureRequest | None) -> torch.Tensor | None:
        if request is None:
            return None
        states = torch.stack([out.hidden_states[i][:, -1, :] for i in request.layers], dim=1).float()
        return states.mean(dim=1) if request.pool == "mean" else states.flatten(1)

    def _forward(self, features: FeatureRequest | None, **inputs):
        """A prefill forward: last position's logits only; hidden states only of the requested layers."""
        hidden = list(features.layers) if features is not None else False
        return self.model(**inputs, use_cache=True, logits_to_keep=1, output_hidden_states=hidden)

    def _select(self, state: _Session, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        state.cache.reorder_cache(index)
        state.attention_mask = state.attention_mask.index_select(0, index)
        state.next_position = state.next_position.index_select(0, index)
        if state.last_logits is not None:
            state.last_logits = state.last_logits.index_select(0, index)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _prefill_full(self, seqs: list[list[int]], features: FeatureRequest | None):
        ids, mask = self._left_pad(seqs)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self._forward(features, input_ids=ids, attention_mask=mask, position_ids=positions)
        self.tokens_processed += int(mask.sum())
        return out, _Session(out.cache, mask, positions[:, -1] + 1)

    def _preamble_cache(self, preamble: list[int]) -> object:
        key = tuple(preamble)
        if self._preamble is None or self._preamble[0] != key:
            ids = torch.tensor([preamble], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self.tokens_processed += len(preamble)
            self._preamble = (key, out.cache)
        return self._preamble[1]

    def _prefill_after_preamble(self, preamble: list[int], suffixes: list[list[int]], features: FeatureRequest | None):
        """Layout per row: [preamble][padding][question]; padding is masked out and
        position ids continue from the preamble, so each row sees exactly
        preamble + question, as in a full prefill."""
        cache = copy.deepcopy(self._preamble_cache(preamble))
        batch = len(suffixes)
        cache.reorder_cache(torch.zeros(batch, dtype=torch.long, device=self.device))
        ids, suffix_mask = self._left_pad(suffixes)
        mask = torch.cat([torch.ones((batch, len(preamble)), dtype=torch.long, device=self.device), suffix_mask], dim=1)
        positions = (mask.cumsum(dim=1) - 1)[:, len(preamble):].clamp(min=0)
        out = self._forward(features, input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
        self.tokens_processed += int(suffix_mask.sum())
        return out, _Session(out.cache, mask, positions[:, -1] + 1)
