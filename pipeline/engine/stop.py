"""When a generated row stops, and the text it leaves."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """When a row stops: an end id, a stop string in the text, or the token budget.

    Stop strings are matched on the text with special tokens kept, so a stop string that is
    a special token (`</s>`, `<|im_end|>`) matches; the final text ends before the first
    end id or stop string, and holds no special tokens.
    """

    eos_ids: frozenset[int]
    stop_strings: tuple[str, ...] = ()
    max_new_tokens: int = 256

    def stop_reason(self, tokenizer, token_ids: list[int]) -> str | None:
        """"eos", "stop" or "length" when the row just finished, else None."""
        if token_ids[-1] in self.eos_ids:
            return "eos"
        if self.stop_strings:
            tail = tokenizer.decode(token_ids[-self._tail_tokens():], skip_special_tokens=False)
            if any(s in tail for s in self.stop_strings):
                return "stop"
        return "length" if len(token_ids) >= self.max_new_tokens else None

    def _tail_tokens(self) -> int:
        # every token decodes to at least one character, so this window holds any stop string that just completed
        return max(len(s) for s in self.stop_strings) + 1

    def final_text(self, tokenizer, token_ids: list[int]) -> str:
        kept, partial = self._cut(tokenizer, token_ids)
        return tokenizer.decode(token_ids[:kept], skip_special_tokens=True) + partial

    def kept_ids(self, tokenizer, token_ids: list[int]) -> list[int]:
        """The tokens wholly before the end: what the row's text is made of (for scoring it)."""
        return token_ids[: self._cut(tokenizer, token_ids)[0]]

    def _cut(self, tokenizer, token_ids: list[int]) -> tuple[int, str]:
        """(n, partial): the first n tokens lie wholly before the first end id or stop string;
        `partial` is the text of token n that comes before the stop string, if any (a stop
        string may start inside a token). Special tokens are whole tokens, so they are never
        in `partial`, and text the model spelled with ordinary tokens is never dropped."""
        end = next((i for i, t in enumerate(token_ids) if t in self.eos_ids), len(token_ids))
        if not self.stop_strings:
            return end, ""
        raw = tokenizer.decode(token_ids[:end], skip_special_tokens=False)
        cut = min((raw.find(s) for s in self.stop_strings if s in raw), default=None)
        if cut is None:
            return end, ""
        n, before = 0, ""
        while n < end:
            longer = tokenizer.decode(token_ids[: n + 1], skip_special_tokens=False)
            if len(longer) > cut or not raw.startswith(longer):
                break
            n, before = n + 1, longer
        return n, raw[len(before):cut]


def stop_rule(eos_ids: Iterable[int], stop_token_ids: Iterable[int], stop_strings: Iterable[str], max_new_tokens: int) -> StopRule:
    """The one stop rule of a run: the end ids of both models (a teacher's chat end token
    ends its rows too) and the config's extra stop ids, the template's stop strings."""
    return StopRule(frozenset(eos_ids) | frozenset(stop_token_ids), tuple(stop_strings), max_new_tokens)
