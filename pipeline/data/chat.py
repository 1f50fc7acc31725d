"""Prompts through a tokenizer's chat template, as instruct models are evaluated: the few-shot
exemplars as user/assistant turns (or all in one user turn), an optional system message, the
generation prompt added. The tokens are exactly `apply_chat_template`'s; the part every
question shares (system and exemplar turns) is the preamble whose KV cache is reused.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.config.prompt_style import CHAT_TEMPLATE_ROLES, PromptStyle
from pipeline.data.special_tokens import special_token_ids
from pipeline.errors import UserError

_REPLY = "\u2063reply\u2063"  # an assistant turn's text, found again in the rendering
_PROBES = ("0", "1", "a", "Z", "?", "\u00e9", " x")  # first characters of different kinds
_TWO_QUESTIONS = ("What is 2 plus 3?", "Name a colour.")  # must render as two different prompts


class FewShot(Protocol):
    """What a chat prompt reads of a template (pipeline/data/prompts.py's PromptTemplate)."""

    instruction: str
    exemplars: tuple  # of Exemplar: question, answer

    def suffix(self, question: str) -> str: ...

    def render(self, question: str) -> str: ...


@dataclass(frozen=True)
class ChatFormat:
    """A resolved chat prompt: the one Jinja template both models get, and its end-of-turn ids."""

    template: str
    system: str | None = None
    fewshot_as_multiturn: bool = True
    end_ids: tuple[int, ...] = ()  # the ids that end an assistant turn (they join the stop rule)


def chat_messages(template: FewShot, question: str, chat: ChatFormat) -> list[dict[str, str]]:
    """The conversation for one question: system, then each exemplar as a user turn (its
    question as the template frames it) and an assistant turn (its answer), then the question."""
    system = "\n\n".join(s for s in (chat.system, template.instruction.strip() if chat.fewshot_as_multiturn else "") if s)
    messages = [{"role": "system", "content": system}] if system else []
    if not chat.fewshot_as_multiturn:
        return messages + [{"role": "user", "content": template.render(question).rstrip()}]
    for ex in template.exemplars:
        messages += [{"role": "user", "content": template.suffix(ex.question).rstrip()},
                     {"role": "assistant", "content": ex.answer}]
    return messages + [{"role": "user", "content": template.suffix(question).rstrip()}]


def render_chat(tokenizer: Any, messages: list[dict[str, str]], chat: ChatFormat, generation_prompt: bool = True) -> str:
    try:
        return tokenizer.apply_chat_template(messages, chat_template=chat.template, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as e:  # noqa: BLE001 - a Jinja error (e.g. a template that allows no system turn)
        raise UserError(f"chat template: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None


def encode_chat(tokenizer: Any, template: FewShot, question: str, chat: ChatFormat) -> tuple[list[int], list[int]]:
    """(preamble, suffix) token ids whose concatenation is `apply_chat_template`'s, exactly: the
    rendered text tokenized whole, split where the shared turns end."""
    ids = _tokens(tokenizer, render_chat(tokenizer, chat_messages(template, question, chat), chat))
    n = _common_length([[*_preamble_ids(tokenizer, template, chat), -1], ids])
    return ids[:n], ids[n:]


@functools.lru_cache(maxsize=32)
def _preamble_ids(tokenizer: Any, template: FewShot, chat: ChatFormat) -> tuple[int, ...]:
    """The tokens every question's prompt starts with: the common prefix of a few probe
    questions' tokens and of the text they share (text at the boundary may merge with a
    question's first characters, so a question whose tokens part earlier gets a shorter
    preamble, and stays exact)."""
    texts = [render_chat(tokenizer, chat_messages(template, q, chat), chat) for q in _PROBES]
    shared = texts[0][: len(os.path.commonprefix(texts))]
    probes = [_tokens(tokenizer, text) for text in texts] + [_tokens(tokenizer, shared) + [-1]]
    return tuple(probes[0][: _common_length(probes)])


def _common_length(seqs: list[list[int]]) -> int:
    """How many leading ids all of `seqs` share, each keeping at least one of its own."""
    n = 0
    while all(len(s) > n + 1 and s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def _tokens(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # as apply_chat_template tokenizes


def end_of_turn_ids(tokenizer: Any, template: str) -> tuple[int, ...]:
    """The special token that closes an assistant turn in `template` (Qwen's <|im_end|>, Llama 3's
    <|eot_id|>, Phi-3's <|end|>), found by rendering one turn; () if it closes with none."""
    chat = ChatFormat(template)
    text = render_chat(tokenizer, [{"role": "user", "content": "0"}, {"role": "assistant", "content": _REPLY}], chat, False)
    after = text.split(_REPLY, 1)[1] if _REPLY in text else ""
    special = special_token_ids(tokenizer)
    return next(((i,) for i in _tokens(tokenizer, after) if i in special), ())


def chat_format(style: PromptStyle, student: Any, teacher: Any | None, names: tuple[str, str]) -> ChatFormat:
    """The chat prompt both models get: their own template, which must be the same, unless
    `style.chat_template` names one (student, teacher, a Jinja file or Jinja text)."""
    template = _chosen_template(style.chat_template, {"student": student, "teacher": teacher}, dict(zip(CHAT_TEMPLATE_ROLES, names)))
    _check_puts_the_question(student, ChatFormat(template, style.system), style.chat_template)
    return ChatFormat(template, style.system, style.fewshot_as_multiturn, end_of_turn_ids(student, template))


def _check_puts_the_question(tokenizer: Any, chat: ChatFormat, choice: str | None) -> None:
    """Refuse a template whose prompt does not depend on the question (a file that is not a
    chat template, such as /etc/hostname, or Jinja that never reads `messages`): every row
    would get one prompt and one answer, and the run would look like a run."""
    system = [{"role": "system", "content": chat.system}] if chat.system else []
    first, second = (render_chat(tokenizer, [*system, {"role": "user", "content": q}], chat) for q in _TWO_QUESTIONS)
    if first == second:
        which = "the models' own chat template" if choice is None else f"prompt.chat_template ({choice})"
        raise UserError(f"{which} renders every question alike ({first[:60]!r} for two different questions): "
                        "a chat template must put the conversation's `messages` into the prompt")


def _chosen_template(choice: str | None, tokenizers: dict[str, Any], names: dict[str, str]) -> str:
    own = {role: _own_template(tok) for role, tok in tokenizers.items() if tok is not None}
    if choice is None:
        if own["student"] is None:
            teacher = " or 'teacher'" if own.get("teacher") else ""
            raise UserError(f"prompt.chat: the student '{names['student']}' has no chat template: set prompt.chat_template "
                            f"to a Jinja file or Jinja text{teacher}")
        if "teacher" in own and not _same_prompts(tokenizers["student"], own["student"], own["teacher"]):
            raise UserError("prompt.chat: the student's and the teacher's chat templates differ, and both models must get the "
                            "same prompt tokens: set prompt.chat_template to student, teacher or a Jinja file")
        return own["student"]
    if choice in CHAT_TEMPLATE_ROLES:
        if own.get(choice) is None:
            raise UserError(f"prompt.chat_template: the {choice} '{names[choice]}' has no chat template")
        return own[choice]
    path = Path(choice).expanduser()
    if path.suffix in (".jinja", ".j2") or path.is_file():
        if not path.is_file():
            raise UserError(f"prompt.chat_template: file not found: {choice}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"prompt.chat_template: {path}: not UTF-8 text (a Jinja chat template is text)") from None
        except OSError as e:
            raise UserError(f"prompt.chat_template: {path}: not readable ({e.strerror or e})") from None
    if "{{" in choice or "{%" in choice:
        return choice
    raise UserError(f"prompt.chat_template must be student, teacher, a Jinja file or Jinja text, got {choice!r}")


def _same_prompts(tokenizer: Any, first: str, second: str | None) -> bool:
    """Whether two templates render few-shot conversations alike (Qwen2.5's 0.5B and 1.5B
    templates differ only in how their tool-use text escapes braces)."""
    if second is None:
        return False
    if first == second:
        return True
    turns = [{"role": "user", "content": "0"}, {"role": "assistant", "content": "1"}, {"role": "user", "content": "2"}]
    probes = [turns, [{"role": "system", "content": "3"}, *turns]]
    return all(render_chat(tokenizer, probe, ChatFormat(first)) == render_chat(tokenizer, probe, ChatFormat(second))
               for probe in probes)


def _own_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    return template.get("default") if isinstance(template, dict) else template
