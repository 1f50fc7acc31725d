"""A KV cache of row slots: every row of every session keeps its own length.

transformers' `DynamicCache` holds a batch as one tensor per layer that grows by
concatenation (a copy of the whole cache per forward) and gives all rows one width, so
feeding some rows a few tokens pads every other row by as many and runs them through the
model too. Here each layer's keys and values are preallocated `[slots, kv_heads, length,
head_dim]`, a row's entries sit left-aligned in its slot, and a forward names the slots it
feeds: their new entries are written in place, the other slots are not touched, and the
attention reads the fed slots only (a view when they are consecutive, else one gather of
those rows). A catch-up of a few rows is then a forward of their tokens alone, and a decode
step appends in place.

The forward's mask is built here (`Forward`): row s's new tokens are laid out last in the
query (pads first, so the last position is every row's last real token: `logits_to_keep=1`
reads it), each real token at column `length[s] + i` of its slot, seeing columns
`0 … length[s] + i`. Pads write into columns past the row's real entries, which no real
query sees and the next forward of the row overwrites.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache

HEADROOM = 256  # columns added past the longest need when the slots must grow: growth is rare, and amortized


@dataclass
class Forward:
    """One forward over some slots: their ids [S], real tokens per row [S], the query width M,
    and what the model is called with (position ids [S, M], the mask [S, 1, M, W])."""

    slots: torch.Tensor
    counts: torch.Tensor
    columns: torch.Tensor  # [S, M]: where each query position's key and value are written
    positions: torch.Tensor
    mask: torch.Tensor | dict
    width: int
    view: slice | None  # the fed slots as a slice of the pool, when they are consecutive and in order


class SlotCache(Cache):
    """The pool of slots of one model (shared by all its sessions). `update` is what the
    model's attention layers call during a forward that `feed` prepared. Every method that
    writes runs in inference mode, whoever calls it (its tensors are inference tensors)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 mask_kind: str = "bool", sliding_window: int | None = None, sliding_layers: bool = False):
        super().__init__(layers=[])
        self.n_layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.mask_kind, self.sliding_window, self.sliding_layers = mask_kind, sliding_window, sliding_layers
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths = torch.zeros(0, dtype=torch.long)  # real entries per slot (on the CPU: read per call)
        self.free: list[int] = []
        self.current: Forward | None = None
        self.grown = 0  # reallocations so far (each copies the live entries once)

    # -- slots ----------------------------------------------------------
    @property
    def capacity(self) -> tuple[int, int]:
        """(slots, columns) allocated."""
        return (self.keys[0].shape[0], self.keys[0].shape[2]) if self.keys else (0, 0)

    @torch.inference_mode()
    def alloc(self, n: int) -> list[int]:
        """n empty slots, lowest ids first (so a batch's slots tend to be consecutive)."""
        if len(self.free) < n:
            slots, columns = self.capacity
            self._grow(slots + max(n - len(self.free), slots // 2), columns)
        self.free.sort()
        taken, self.free = self.free[:n], self.free[n:]
        self.lengths[taken] = 0
        return taken

    @torch.inference_mode()
    def release(self, slots: list[int]) -> None:
        self.free.extend(slots)
        if len(self.free) == self.capacity[0]:  # nothing live: give the memory back
            self.keys, self.values, self.lengths, self.free = [], [], torch.zeros(0, dtype=torch.long), []

    @torch.inference_mode()
    def copy(self, source: list[int], target: list[int]) -> None:
        """Each target slot gets its source slot's entries (a row branched or cloned)."""
        if not source:
            return
        src = torch.tensor(source, device=self.device)
        dst = torch.tensor(target, device=self.device)
        width = int(self.lengths[source].max())
        for store in (self.keys, self.values):
            for layer in store:
                layer[dst, :, :width] = layer[src, :, :width]
        self.lengths[target] = self.lengths[source]

    @torch.inference_mode()
    def write_prefix(self, slots: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """The same entries (per layer [1, H, P, D], e.g. a shared few-shot preamble) at the
        start of every slot of `slots`."""
        width = keys[0].shape[2]
        self._ensure(width)
        index = torch.tensor(slots, device=self.device)
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.keys[layer][index, :, :width] = k.to(self.dtype)
            self.values[layer][index, :, :width] = v.to(self.dtype)
        self.lengths[slots] = width

    # -- a forward -------------------------------------------------------
    @torch.inference_mode()
    def feed(self, slots: list[int], counts: list[int]) -> Forward:
        """Prepare a forward that feeds `counts[i]` tokens to slot `slots[i]` (each ≥ 1)."""
        width_q = max(counts)
        lengths = self.lengths[slots]
        self._ensure(int(lengths.max()) + width_q)
        count = torch.tensor(counts, dtype=torch.long)
        pads = width_q - count
        j = torch.arange(width_q)
        # real token i sits at query j = pads + i, written at column length + i; pads go past the real ones
        real = j[None, :] >= pads[:, None]
        columns = torch.where(real, lengths[:, None] + j[None, :] - pads[:, None], lengths[:, None] + count[:, None] + j[None, :])
        width = int((lengths + width_q).max())
        keys = torch.arange(width)
        seen = keys[None, None, :] <= columns[:, :, None]  # [S, M, W]
        mask = self._mask(seen, columns, keys)
        start = slots[0]
        view = slice(start, start + len(slots)) if slots == list(range(start, start + len(slots))) else None
        self.current = Forward(torch.tensor(slots, device=self.device), count, columns.to(self.device),
                            columns.to(self.device), mask, width, view)
        return self.current

    @torch.inference_mode()
    def commit(self) -> None:
        """The forward succeeded: the fed rows' entries count."""
        feed, self.current = self.current, None
        self.lengths[feed.slots.cpu()] += feed.counts

    def abandon(self) -> None:
        self.current = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the forward's new entries [S, H, M, D] into their slots; the fed slots' keys and values [S, H, W, D]."""
        feed = self.current
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        rows = feed.slots[:, None]
        keys[rows, :, feed.columns] = key_states.transpose(1, 2).to(self.dtype)
        values[rows, :, feed.columns] = value_states.transpose(1, 2).to(self.dtype)
        if feed.view is not None:
            return keys[feed.view, :, : feed.width], values[feed.view, :, : feed.width]
        return keys[:, :, : feed.width][feed.slots], values[:, :, : feed.width][feed.slots]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0

    def __len__(self) -> int:
        return self.n_layers

    # -- internals -------------------------------------------------------
    def _mask(self, seen: torch.Tensor, columns: torch.Tensor, keys: torch.Tensor) -> torch.Tensor | dict:
        full = self._as_mask(seen)
        if not self.sliding_layers:
            return full
        near = seen & (columns[:, :, None] - keys[None, None, :] < self.sliding_window)
        return {"full_attention": full, "sliding_attention": self._as_mask(near)}

    def _as_mask(self, seen: torch.Tensor) -> torch.Tensor:
        seen = seen[:, None].to(self.device)
        if self.mask_kind == "bool":
            return seen
        return torch.zeros(seen.shape, dtype=self.dtype, device=self.device).masked_fill_(~seen, torch.finfo(self.dtype).min)

    def _ensure(self, columns: int) -> None:
        slots, have = self.capacity
        if columns > have:
            self._grow(slots, columns + HEADROOM)

    @torch.inference_mode()
    def _grow(self, slots: int, columns: int) -> None:
        """Reallocate to (slots, columns), the live entries copied over."""
        old_slots, old_columns = self.capacity
        shape = (slots, self.kv_heads, columns, self.head_dim)
        for store in (self.keys, self.values):
            grown = []
            for layer in range(self.n_layers):
                # zeros, not empty: a masked column still multiplies its value by 0, and 0 · NaN is NaN
                new = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if old_slots:
                    new[:old_slots, :, :old_columns] = store[layer]
                grown.append(new)
            store[:] = grown
        self.lengths = torch.cat([self.lengths, torch.zeros(slots - old_slots, dtype=torch.long)])
        self.free.extend(range(old_slots, slots))
        self.grown += int(old_slots > 0)
