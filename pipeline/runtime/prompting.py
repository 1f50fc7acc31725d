"""The prompt a run's workers encode: its templates, put through the chat template when the
config asks (resolved once in the driver from both tokenizers, then shipped to the workers)."""
from __future__ import annotations

import functools
from dataclasses import replace

from pipeline.config import ModelSpec, RunConfig
from pipeline.config.prompt_style import PromptStyle
from pipeline.data.chat import ChatFormat, chat_format
from pipeline.data.prompts import PromptTemplate, load_template
from pipeline.models.loading import load_tokenizer


def run_chat(config: RunConfig) -> ChatFormat | None:
    """The run's chat format; None for raw few-shot prompts."""
    return _chat(config.prompt_style, config.student, config.teacher)


@functools.lru_cache(maxsize=4)
def _chat(style: PromptStyle, student: ModelSpec, teacher: ModelSpec | None) -> ChatFormat | None:
    if not style.chat:
        return None
    names = (student.path, teacher.path if teacher is not None else "")
    return chat_format(style, load_tokenizer(student), load_tokenizer(teacher) if teacher is not None else None, names)


def run_template(name: str, chat: ChatFormat | None) -> PromptTemplate:
    """The template `name`, as this run puts it to the models."""
    template = load_template(name)
    return template if chat is None else replace(template, chat=chat)
