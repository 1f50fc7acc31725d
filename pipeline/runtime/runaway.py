"""Rows that ran to the token budget after generating a special token that ends nothing: a
model folder that does not list one of its end ids (a converted Qwen2.5 ends answers with
<|endoftext|>, its pad token, but lists only <|im_end|>). Said once per model and token, with
the config line that would stop there."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.data.special_tokens import special_token_ids


class RunawayWatch:
    def __init__(self, tokenizer: Any, stop_ids: Iterable[int], configured: Iterable[int]):
        self.tokenizer = tokenizer
        self.special = special_token_ids(tokenizer) - set(stop_ids)
        self.configured = list(configured)
        self.said: set[tuple[str, int]] = set()

    def __call__(self, rows: Iterable[dict]) -> list[str]:
        """A line for each (model, token) seen for the first time in `rows` (result rows)."""
        lines = []
        for row in rows:
            if row["finish_reason"] != "length":
                continue
            at = next((i for i, t in enumerate(row["generated_token_ids"]) if t in self.special), None)
            if at is None:
                continue
            model = "teacher" if row["teacher_token_mask"][at] else "student"
            token = row["generated_token_ids"][at]
            if (model, token) in self.said:
                continue
            self.said.add((model, token))
            text = self.tokenizer.convert_ids_to_tokens(token)
            lines.append(f"note: {row['example_id']} ({row['strategy']}) ran to decoding.max_new_tokens past {text!r} "
                         f"(id {token}), which the {model} generated and no stop rule ends; if it ends the {model}'s answers: "
                         f"--set decoding.stop_token_ids=[{', '.join(map(str, [*self.configured, token]))}]")
        return lines
