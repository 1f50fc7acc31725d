"""A tokenizer's special tokens: those it names (eos, pad, ...) and every added token marked special."""
from __future__ import annotations

from typing import Any


def special_token_ids(tokenizer: Any) -> set[int]:
    return set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
