"""When a generated row stops, and the text it leaves."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """When a row stops: an EOS id, a stop string in the text, or the token budget."""

    eos_ids: frozenset[int]
    stop_strings: tuple[str, ...] = ()
    max_new_tokens: int = 256

    def stop_reason(self, tokenizer, token_ids: list[int]) -> str | None:
        if token_ids[-1] in self.eos_ids:
            return "eos"
        if self.stop_strings:
            tail = tokenizer.decode(token_ids[-self._tail_tokens():], skip_special_tokens=True)
            if any(s in tail for s in self.stop_strings):
                return "stop"
        return "length" if len(token_ids) >= self.max_new_tokens else None

    def _tail_tokens(self) -> int:
        # every token decodes to at least one character, so this window holds any stop string that just completed
        return max(len(s) for s in self.stop_strings) + 1

    def final_text(self, tokenizer, token_ids: list[int]) -> str:
        ids = [t for t in token_ids if t not in self.eos_ids]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop_strings if s in text), default=len(text))
        return text[:cut]
