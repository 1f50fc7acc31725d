"""How a prompt is put to the models: raw few-shot text (the default), or the tokenizer's chat
template, as instruct models are evaluated (lm-evaluation-harness's `--apply_chat_template`)."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UserError

CHAT_TEMPLATE_ROLES = ("student", "teacher")


@dataclass(frozen=True)
class PromptStyle:
    chat: bool = False  # build each prompt with the chat template, the generation prompt added
    system: str | None = None  # a system message (the template's instruction joins it)
    # exemplars as user/assistant turns; false: the whole few-shot prompt in one user turn
    fewshot_as_multiturn: bool = True
    # the template both models get: "student", "teacher", a Jinja file or Jinja text; default:
    # the models' own, which must then be the same
    chat_template: str | None = None

    def __post_init__(self) -> None:
        for key in ("chat", "fewshot_as_multiturn"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"prompt.{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("system", "chat_template"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UserError(f"prompt.{key} must be a non-empty string, got {value!r}")
        if not self.chat and (self.system is not None or self.chat_template is not None or not self.fewshot_as_multiturn):
            raise UserError("prompt.system, prompt.chat_template and prompt.fewshot_as_multiturn apply to chat prompts: "
                            "set prompt.chat: true")
