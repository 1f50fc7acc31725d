"""One model behind a batched prefill/step API with KV caches kept between calls.

The state of a batch lives inside the runner under a session id, so the same API
works in process and behind a Ray actor: the caller sends token ids and gets
last-position logits back, once per step per batch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from pipeline.models import LoadedModel

Prompt = tuple[list[int], list[int]]  # (preamble ids, question suffix ids)


@dataclass
class _Session:
    cache: object
    attention_mask: torch.Tensor  # [B, L]: 1 for real tokens, 0 for padding
    next_position: torch.Tensor  # [B]: position id of the next token


class ModelRunner:
    """Batched greedy-decoding primitives for one causal LM.

    `vocab_size` limits logits to the range shared with the other model.
    `reuse_preamble` computes the few-shot preamble's KV cache once and copies it
    into every batch instead of re-encoding it per question.
    """

    def __init__(self, lm: LoadedModel, vocab_size: int | None = None, reuse_preamble: bool = True):
        self.lm = lm
        self.model = lm.model
        self.device = lm.device
        self.vocab_size = vocab_size
        self.reuse_preamble = reuse_preamble
        self.pad_id = lm.tokenizer.pad_token_id or 0
        self.tokens_processed = 0
        self._sessions: dict[str, _Session] = {}
        self._preamble: tuple[tuple[int, ...], object] | None = None

    # -- public API -------------------------------------------------------
    def prefill(self, session: str, prompts: list[Prompt]) -> torch.Tensor:
        """Encode a batch of prompts; returns float32 logits of the last position, [B, V]."""
        return self._last_logits(self._prefill(session, prompts, hidden=False).logits)

    def prefill_with_features(self, session: str, prompts: list[Prompt], layers: tuple[int, ...], pool: str = "concat") -> tuple[torch.Tensor, torch.Tensor]:
        """Like `prefill`, plus the hidden state of each prompt's last token at `layers`
        (indices into hidden_states: 0 = embeddings, -1 = last layer), concatenated or
        averaged: float32 [B, D]."""
        out = self._prefill(session, prompts, hidden=True)
        states = torch.stack([out.hidden_states[i][:, -1, :] for i in layers], dim=1).float()
        features = states.mean(dim=1) if pool == "mean" else states.flatten(1)
        return self._last_logits(out.logits), features

    @torch.inference_mode()
    def _prefill(self, session: str, prompts: list[Prompt], hidden: bool):
        preambles = {tuple(p) for p, _ in prompts}
        if self.reuse_preamble and len(preambles) == 1 and next(iter(preambles)):
            out, state = self._prefill_after_preamble(list(next(iter(preambles))), [s for _, s in prompts], hidden)
        else:
            out, state = self._prefill_full([p + s for p, s in prompts], hidden)
        self._sessions[session] = state
        return out

    @torch.inference_mode()
    def step(self, session: str, tokens: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """Feed one token per row and return the next logits.

        `rows` first re-indexes the batch (drop finished rows, or duplicate a row to
        branch it), so the caller never pays for rows it no longer needs.
        """
        state = self._sessions[session]
        if rows is not None:
            self._select(state, rows)
        tokens = tokens.to(self.device).view(-1, 1)
        state.attention_mask = torch.cat([state.attention_mask, torch.ones_like(tokens)], dim=1)
        out = self.model(
            input_ids=tokens,
            attention_mask=state.attention_mask,
            position_ids=state.next_position.view(-1, 1),
            past_key_values=state.cache,
            use_cache=True,
        )
        state.cache = out.past_key_values
        state.next_position = state.next_position + 1
        self.tokens_processed += tokens.shape[0]
        return self._last_logits(out.logits)

    @torch.inference_mode()
    def completion_logprobs(self, prompts: list[Prompt], completions: list[list[int]]) -> list[list[float]]:
        """Log-probability of every completion token given its prompt (teacher forcing), per row."""
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

    def close(self, session: str) -> None:
        self._sessions.pop(session, None)

    # -- internals ----------------------------------------------------------
    def _last_logits(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1, :]
        if self.vocab_size is not None:
            last = last[:, : self.vocab_size]
        return last.float()

    def num_layers(self) -> int:
        return int(self.model.config.get_text_config().num_hidden_layers)

    def _select(self, state: _Session, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        state.cache.reorder_cache(index)
        state.attention_mask = state.attention_mask.index_select(0, index)
        state.next_position = state.next_position.index_select(0, index)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _prefill_full(self, seqs: list[list[int]], hidden: bool):
        ids, mask = self._left_pad(seqs)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, output_hidden_states=hidden)
        self.tokens_processed += int(mask.sum())
        return out, _Session(out.past_key_values, mask, positions[:, -1] + 1)

    def _preamble_cache(self, preamble: list[int]) -> object:
        key = tuple(preamble)
        if self._preamble is None or self._preamble[0] != key:
            ids = torch.tensor([preamble], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True)
            self.tokens_processed += len(preamble)
            self._preamble = (key, out.past_key_values)
        return self._preamble[1]

    def _prefill_after_preamble(self, preamble: list[int], suffixes: list[list[int]], hidden: bool):
        """Layout per row: [preamble][padding][question]; padding is masked out and
        position ids continue from the preamble, so each row sees exactly
        preamble + question, as in a full prefill."""
        cache = copy.deepcopy(self._preamble_cache(preamble))
        batch = len(suffixes)
        cache.reorder_cache(torch.zeros(batch, dtype=torch.long, device=self.device))
        ids, suffix_mask = self._left_pad(suffixes)
        mask = torch.cat([torch.ones((batch, len(preamble)), dtype=torch.long, device=self.device), suffix_mask], dim=1)
        positions = (mask.cumsum(dim=1) - 1)[:, len(preamble):].clamp(min=0)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
            output_hidden_states=hidden,
        )
        self.tokens_processed += int(suffix_mask.sum())
        return out, _Session(out.past_key_values, mask, positions[:, -1] + 1)

    def prompt_cost(self, prompt: Prompt) -> int:
        """Tokens this runner processes for one prompt (a cached preamble is paid once per run, not here)."""
        preamble, suffix = prompt
        return len(suffix) + (0 if self.reuse_preamble else len(preamble))
