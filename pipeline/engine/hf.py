"""The in-process engine: one transformers causal LM behind the engine interface.

The state of a batch lives inside the engine under a session id, so the same API works
in process and behind a Ray actor: the caller sends token ids and gets the next-token
distribution back, once per step per batch. A session is a list of row slots in the
engine's `SlotCache` (one pool for all its sessions): a forward feeds the rows it names and
no others, whatever their lengths, so a catch-up of a few rows costs their tokens, a step
appends in place, and dropping or branching a row touches that row only. Only the last
position's logits are ever computed (`logits_to_keep=1`), and only the requested
hidden-state layers are kept.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.engine.interface import Completion, Feed, FeatureRequest, NextToken, Prompt, Ready, Sampler, prompt_cost
from pipeline.engine.sessions import SessionStore
from pipeline.engine.slot_cache import SlotCache
from pipeline.engine.steps import decode_steps
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.models.loading import LoadedModel


# what a forward costs besides its tokens, counted in tokens: a forward per group of similar
# lengths pays it again, padding every row to its group's longest pays the padded tokens
FORWARD_COST_TOKENS = 32


def buckets(counts: list[int], fixed: int = FORWARD_COST_TOKENS) -> list[list[int]]:
    """Rows (indices into `counts`) grouped into forwards: each group is padded to its longest
    row, each forward costs `fixed` besides; the cheapest split of the rows sorted by length."""
    order = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)
    if counts[order[0]] == counts[order[-1]]:
        return [order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: the first j rows (longest first) in groups
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # a group of rows i..j-1, padded to row i's length
            cost = best[i] + fixed + (j - i) * counts[order[i]]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j:
        groups.append(order[cut[j]: j])
        j = cut[j]
    return groups[::-1]


@dataclass
class _Session:
    slots: list[int]  # the engine's slot of each row, in the session's row order
    last_logits: torch.Tensor | None = None  # [B, V] of the last call, for full_probs


ATTENTION_MASKS = {"sdpa": "bool", "eager": "float"}  # what each attention implementation reads a custom mask as


def slot_cache_for(model, name: str = "") -> SlotCache:
    """The slot pool of a transformers causal LM, or a one-line error for a model whose
    attention it cannot hold (anything but full or sliding-window attention, or an attention
    implementation that takes no custom mask)."""
    config = model.config.get_text_config()
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if not kinds <= {"full_attention", "sliding_attention"}:
        raise UserError(f"model '{name}' has {sorted(kinds - {'full_attention', 'sliding_attention'})} layers: this engine "
                        "holds full and sliding-window attention only")
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if implementation not in ATTENTION_MASKS:
        raise UserError(f"model '{name}' uses attn_implementation '{implementation}': this engine needs one of "
                        f"{sorted(ATTENTION_MASKS)}, which take a mask per row")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return SlotCache(config.num_hidden_layers, getattr(config, "num_key_value_heads", None) or heads, head_dim,
                     model.dtype, model.device, ATTENTION_MASKS[implementation],
                     getattr(config, "sliding_window", None), "sliding_attention" in kinds)


class HFEngine:
    """`StepEngine` and `Generator` over a transformers causal LM.

    `vocab_size` limits logits to the range shared with the other model.
    `reuse_preamble` computes the few-shot preamble's keys and values once and copies them
    into every row instead of re-encoding it per question. In process, handing over full
    float32 rows costs nothing, so it has no transport to choose (a strategy that reads
    them at bfloat16 rounds them itself).
    """

    keeps_sessions = True

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
        self.forwards = 0  # model forwards of prefill, step, extend and step_many
        self.cache = slot_cache_for(self.model, getattr(self.model, "name_or_path", ""))
        self.sessions: SessionStore[_Session] = sessions if sessions is not None else SessionStore()
        self.sessions.on_drop = lambda state: self.cache.release(state.slots)
        self._preamble: tuple[tuple[int, ...], list[torch.Tensor], list[torch.Tensor]] | None = None

    # -- StepEngine -------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> NextToken:
        preambles = {tuple(p) for p, _ in prompts}
        preamble = next(iter(preambles))
        shared = self.reuse_preamble and len(preambles) == 1 and preamble and all(s for _, s in prompts)
        slots = self.cache.alloc(len(prompts))
        try:
            if shared:
                self.cache.write_prefix(slots, *self._preamble_entries(list(preamble)))
            logits, hidden = self._forward(slots, [s if shared else [*p, *s] for p, s in prompts], features)
        except BaseException:
            self.cache.release(slots)
            raise
        self.sessions.put(session, _Session(slots, logits))
        return NextToken(logits, hidden)

    def prefill_async(self, session: str, prompts: Sequence[Prompt], features: FeatureRequest | None = None) -> Ready:
        return Ready(self.prefill(session, prompts, features))

    def step_async(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> Ready:
        return Ready(self.step(session, tokens, rows))

    def full_probs(self, session: str, rows: list[int]) -> torch.Tensor:
        state = self.sessions.get(session)
        return torch.softmax(state.last_logits[rows].float(), dim=-1)

    @torch.inference_mode()
    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> NextToken:
        [out] = self.extend_many([(session, [[t] for t in tokens.tolist()], rows)])
        return out

    def step_many(self, calls: Sequence[tuple[str, torch.Tensor, list[int] | None]]) -> list[NextToken]:
        """`step` for several sessions (session, tokens, rows) in one forward."""
        return self.extend_many([(session, [[t] for t in tokens.tolist()], rows) for session, tokens, rows in calls])

    @torch.inference_mode()
    def extend(self, session: str, tokens: Sequence[list[int]], rows: list[int] | None = None) -> NextToken:
        """`fork(session, rows)` when rows are given, then feed each row its own tokens (none
        for some) in one forward over the fed rows only, each going on from its own length."""
        [out] = self.extend_many([(session, tokens, rows)])
        return out

    def extend_many_async(self, calls: Sequence[Feed]) -> Ready:
        return Ready(self.extend_many(calls))

    @torch.inference_mode()
    def extend_many(self, calls: Sequence[Feed]) -> list[NextToken]:
        """`extend` for several sessions at once (each session once): the fed rows of all of
        them in one forward, whatever their lengths; each call's answer holds its fed rows."""
        if len({session for session, _, _ in calls}) < len(calls):
            raise ValueError("extend_many: a session may be fed once per call")
        states = [self.sessions.get(session) for session, _, _ in calls]
        fed = []
        for state, (_, tokens, rows) in zip(states, calls):
            if rows is not None:
                self._select(state, rows)
            if len(tokens) != len(state.slots) or not any(tokens):
                raise ValueError(f"extend: one token list per row of the session ({len(state.slots)}), some not empty")
            fed.append([i for i, row in enumerate(tokens) if row])
        slots = [state.slots[i] for state, rows in zip(states, fed) for i in rows]
        logits, _ = self._forward(slots, [list(tokens[i]) for (_, tokens, _), rows in zip(calls, fed) for i in rows])
        results, start = [], 0
        for state, rows in zip(states, fed):
            mine = logits[start: start + len(rows)]
            start += len(rows)
            if len(rows) == len(state.slots):
                state.last_logits = mine
            else:
                state.last_logits = state.last_logits.clone()
                state.last_logits[rows] = mine
            results.append(NextToken(mine))
        return results

    def fork(self, session: str, rows: list[int]) -> None:
        self._select(self.sessions.get(session), rows)

    def clone(self, session: str, new_session: str, rows: list[int]) -> None:
        state = self.sessions.get(session)
        source = [state.slots[r] for r in rows]
        slots = self.cache.alloc(len(rows))
        self.cache.copy(source, slots)
        self.sessions.put(new_session, _Session(slots, state.last_logits[rows]))

    def close(self, session: str) -> None:
        self.sessions.pop(session)

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
    def _forward(self, slots: list[int], seqs: list[list[int]], features: FeatureRequest | None = None):
        """Feed `seqs[i]` to slot `slots[i]`: the logits after each row's last token [S, V] (and
        the requested features). Rows of very different lengths go in separate forwards
        (`buckets`), each in slot order so that consecutive slots are read in place."""
        logits, hidden = [None] * len(slots), [None] * len(slots)
        for group in buckets([len(s) for s in seqs]):
            group.sort(key=slots.__getitem__)
            out, states = self._forward_rows([slots[i] for i in group], [seqs[i] for i in group], features)
            for j, i in enumerate(group):
                logits[i] = out[j]
                if states is not None:
                    hidden[i] = states[j]
        return torch.stack(logits), None if features is None else torch.stack(hidden)

    def _forward_rows(self, slots: list[int], seqs: list[list[int]], features: FeatureRequest | None):
        feed = self.cache.feed(slots, [len(s) for s in seqs])
        ids, _ = self._left_pad(seqs)
        hidden = list(features.layers) if features is not None else False
        try:
            out = self.model(input_ids=ids, attention_mask=feed.mask, position_ids=feed.positions, cache=self.cache,
                             use_cache=True, logits_to_keep=1, output_hidden_states=hidden)
        except BaseException:
            self.cache.abandon()
            raise
        self.cache.commit()
        self.tokens_processed += int(feed.counts.sum())
        self.forwards += 1
        return self._last_logits(out.logits), None if features is None else self._features(out, features)

    def _last_logits(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1, :]
        if self.vocab_size is not None:
            last = last[:, : self.vocab_size]
        return last.float()

    @staticmethod
    def _features(out, request: FeatureRequest) -> torch.Tensor:
        states = torch.stack([out.hidden_states[i][:, -1, :] for i in request.layers], dim=1).float()
        return states.mean(dim=1) if request.pool == "mean" else states.flatten(1)

    def _select(self, state: _Session, rows: list[int]) -> None:
        """Re-index a session's rows: a row named once keeps its slot, a row named again is
        copied into a new one (a branch), a row not named gives its slot back."""
        kept, repeats = [], []
        seen: set[int] = set()
        for r in rows:
            slot = state.slots[r]
            kept.append(None if slot in seen else slot)
            if slot in seen:
                repeats.append(slot)
            seen.add(slot)
        self.cache.release([s for s in state.slots if s not in seen])
        fresh = self.cache.alloc(len(repeats))
        self.cache.copy(repeats, fresh)
        it = iter(fresh)
        state.slots = [slot if slot is not None else next(it) for slot in kept]
        if state.last_logits is not None:
            state.last_logits = state.last_logits[rows]

    def _preamble_entries(self, preamble: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The preamble's keys and values per layer [1, H, P, D], computed once per preamble."""
        key = tuple(preamble)
        if self._preamble is None or self._preamble[0] != key:
            ids = torch.tensor([preamble], dtype=torch.long, device=self.device)
            cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
            self.tokens_processed += len(preamble)
            self._preamble = (key, [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers])
        return self._preamble[1], self._preamble[2]

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)
