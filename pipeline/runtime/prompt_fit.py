"""Prompts that cannot fit the models' context are found in the driver, before Ray starts: a
question of megabytes would otherwise reach a worker and ask for a KV cache of terabytes."""
from __future__ import annotations

from collections.abc import Iterable

from pipeline.data.chat import ChatFormat
from pipeline.data.prompts import encode_prompt
from pipeline.errors import UserError
from pipeline.models.facts import ModelFacts
from pipeline.models.loading import load_tokenizer
from pipeline.runtime.prompting import run_template


def check_prompts_fit(spec, units: Iterable, default_prompt: str, max_new_tokens: int, *models: ModelFacts,
                      chat: ChatFormat | None = None) -> int:
    """Every unit's questions, encoded as the workers encode them (its template's preamble and
    the question's suffix), plus the token budget, fit every model's context. Returns the
    longest prompt's length in tokens."""
    limits = [m.max_positions for m in models if m.max_positions is not None]
    context = min(limits) if limits else None
    longest = 0
    questions: dict[str, dict] = {}  # template name -> example id -> example (units repeat examples per strategy)
    for unit in units:
        questions.setdefault(getattr(unit, "prompt", None) or default_prompt, {}).update((ex.id, ex) for ex in unit.examples)
    tokenizer = load_tokenizer(spec)
    for name, examples in questions.items():
        lengths = _prompt_lengths(tokenizer, run_template(name, chat), [ex.question for ex in examples.values()])
        for ex, length in zip(examples.values(), lengths):
            longest = max(longest, length)
            needed = length + max_new_tokens
            if context is not None and needed > context:
                raise UserError(f"example {ex.id}: its prompt ({length:,} tokens) and decoding.max_new_tokens "
                                f"({max_new_tokens}) need {needed:,} positions; the models hold {context:,}: shorten or drop "
                                "the question, or lower max_new_tokens")
    return longest


def _prompt_lengths(tokenizer, template, questions: list[str]) -> list[int]:
    """Each question's prompt length in tokens; raw prompts as one batched tokenizer call."""
    if template.chat is not None:
        return [sum(map(len, encode_prompt(tokenizer, template, q))) for q in questions]
    preamble = len(encode_prompt(tokenizer, template, "")[0])
    suffixes = tokenizer([template.suffix(q) for q in questions], add_special_tokens=False)["input_ids"]
    return [preamble + len(ids) for ids in suffixes]
