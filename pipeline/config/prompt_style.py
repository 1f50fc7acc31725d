"""How a prompt is put to the models: raw few-shot text (the default), or the tokenizer's chat
template, as instruct models are evaluated (lm-evaluation-harness's `--apply_chat_template`)."""
from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from pipeline.config.schema import Bool, Str, doc, section
from pipeline.errors import UserError

Text = Annotated[Str, Field(pattern=r"\S")]  # not empty, not only whitespace

CHAT_TEMPLATE_ROLES = ("student", "teacher")


@section
class PromptStyle:
    where: ClassVar[str] = "config: 'prompt'"
    chat: Annotated[Bool, doc("build each prompt with the chat template, the generation prompt added")] = False
    system: Annotated[Text | None, doc("a system message (the template's instruction joins it)")] = None
    fewshot_as_multiturn: Annotated[Bool, doc("exemplars as user/assistant turns; false: the whole few-shot "
                                              "prompt in one user turn")] = True
    chat_template: Annotated[Text | None, doc("the template both models get: student, teacher, a Jinja file or "
                                              "Jinja text; default: the models' own, which must then be the same")] = None

    def __post_init__(self) -> None:
        if not self.chat and (self.system is not None or self.chat_template is not None or not self.fewshot_as_multiturn):
            raise UserError("prompt.system, prompt.chat_template and prompt.fewshot_as_multiturn apply to chat prompts: "
                            "set prompt.chat: true")
