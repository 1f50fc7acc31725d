"""Few-shot chain-of-thought prompt templates, stored as YAML data in prompt_templates/."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.config.benchmark_spec import read_benchmark
from pipeline.config.yaml_text import read_yaml
from pipeline.data.chat import ChatFormat, chat_messages, encode_chat, render_chat
from pipeline.errors import UserError

TEMPLATE_DIR = Path(__file__).parent / "prompt_templates"
BENCHMARK_PREFIX = "benchmark:"  # a benchmark file's own template (see BenchmarkSpec.prompt_ref)


@dataclass(frozen=True)
class Exemplar:
    question: str
    answer: str  # chain of thought ending "The answer is N."


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt is `preamble + question_prefix + question + answer_prefix`.

    The preamble (instruction + exemplars) is identical for every question, so its
    tokens are encoded separately and its KV cache can be shared across questions.
    """

    name: str
    exemplars: tuple[Exemplar, ...] = ()
    instruction: str = ""
    question_prefix: str = "Q: "
    answer_prefix: str = "\nA:"
    separator: str = "\n\n"
    stop_strings: tuple[str, ...] = ("\n\nQ:", "\nQ:")
    chat: ChatFormat | None = None  # put through a chat template (pipeline/data/chat.py), else raw text

    def preamble(self) -> str:
        shots = "".join(
            f"{self.question_prefix}{ex.question}{self.answer_prefix}{answer_lead(self)}{ex.answer}{self.separator}"
            for ex in self.exemplars
        )
        return self.instruction + shots

    def suffix(self, question: str) -> str:
        return f"{self.question_prefix}{question}{self.answer_prefix}"

    def render(self, question: str) -> str:
        return self.preamble() + self.suffix(question)


def answer_lead(template: PromptTemplate) -> str:
    """The space between the answer prefix and the answer, unless the prefix ends with it
    (then the model's first generated token is the answer's first word, not a space)."""
    return "" if template.answer_prefix.endswith(" ") else " "


def load_template(name_or_path: str) -> PromptTemplate:
    """Load a template by built-in name (e.g. `gsm8k_cot_8shot`), from a YAML path, or the
    one a benchmark file holds inline (`benchmark:arc_challenge`, `benchmark:path/to/b.yaml`)."""
    if name_or_path.startswith(BENCHMARK_PREFIX):
        bench = read_benchmark(name_or_path[len(BENCHMARK_PREFIX):])
        if isinstance(bench.prompt, str):
            return load_template(bench.prompt)
        return template_from_mapping(dict(bench.prompt), bench.name, f"benchmark {bench.name}: prompt")
    path = Path(name_or_path)
    if not path.suffix:
        path = TEMPLATE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))
        raise UserError(f"prompt template '{name_or_path}' not found (built-in: {', '.join(known)})")
    raw = read_yaml(path, f"prompt template {path}") or {}
    return template_from_mapping(raw, path.stem, f"prompt template {path}")


def template_from_mapping(raw: dict, default_name: str, where: str) -> PromptTemplate:
    """A template from its YAML mapping (name, instruction, prefixes, exemplars, ...)."""
    if "chat" in raw:
        raise UserError(f"{where}: 'chat' belongs to the run config (prompt: {{chat: true}}), not to a template")
    try:
        raw = dict(raw)
        exemplars = tuple(Exemplar(str(e["question"]), str(e["answer"])) for e in raw.pop("exemplars", []))
        if "stop_strings" in raw:
            raw["stop_strings"] = tuple(raw["stop_strings"])
        return PromptTemplate(name=raw.pop("name", default_name), exemplars=exemplars, **raw)
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{where}: malformed ({exc})") from None


def encode_prompt(tokenizer, template: PromptTemplate, question: str) -> tuple[list[int], list[int]]:
    """Token ids of (preamble, question suffix), encoded separately.

    Encoding the two parts separately *defines* the prompt's tokens, so decoding
    with and without a cached preamble sees exactly the same ids. A chat prompt's tokens are
    `apply_chat_template`'s, split where the turns every question shares end.
    """
    if template.chat is not None:
        return encode_chat(tokenizer, template, question, template.chat)
    preamble = tokenizer.encode(template.preamble(), add_special_tokens=False) if template.preamble() else []
    suffix = tokenizer.encode(template.suffix(question), add_special_tokens=False)
    if getattr(tokenizer, "bos_token_id", None) is not None and getattr(tokenizer, "add_bos_token", False):
        preamble = [tokenizer.bos_token_id] + preamble
    return preamble, suffix


def prompt_text(tokenizer, template: PromptTemplate, question: str) -> str:
    """The prompt as text: the template's rendering, or the chat template's."""
    if template.chat is None:
        return template.render(question)
    return render_chat(tokenizer, chat_messages(template, question, template.chat), template.chat)


def prompt_hash(template: PromptTemplate, question: str, tokenizer=None) -> str:
    """Identifies the exact prompt text a row was decoded from: for a chat prompt, the chat
    template's rendering (which `tokenizer` makes; a template may put the date in it)."""
    text = template.render(question) if template.chat is None else prompt_text(tokenizer, template, question)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
