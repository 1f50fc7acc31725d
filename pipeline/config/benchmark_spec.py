"""A benchmark file read into a plain `BenchmarkSpec`: where its rows are, which fields hold
the question, choices and answer, its answer type and its prompt.

A benchmark is data, one YAML file (the built-in ones are in pipeline/data/benchmarks/;
any other path works too). This layer only checks the file's shape, so a bad file or an
unknown name fails when the config is read; pipeline/data applies the spec to rows.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.yaml_text import read_yaml
from pipeline.errors import UserError

BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# implemented in pipeline/data/answer_types.py (a test keeps the two lists equal)
ANSWER_TYPES = ("number", "yes_no", "choice", "math")
_TOP_KEYS = ("description", "source", "fields", "answer_type", "prompt")
FIELD_ROLES = ("question", "answer", "choices")


@dataclass(frozen=True)
class FieldRule:
    """How one value is read from a row: a field, or a `str.format` string over fields
    ("{Body} {Question}"); then, optionally, only the text after the last `after` and
    before the first `before` (GSM8K: after "#### "; ASDiv "9 (apples)": before " (")."""

    field: str | None = None
    format: str | None = None
    after: str | None = None
    before: str | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        """The row fields this rule needs."""
        if self.field is not None:
            return (self.field,)
        return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(self.format) if name))

    @property
    def label(self) -> str:
        """How messages name it: 'answer', or the format string."""
        return self.field if self.field is not None else self.format


@dataclass(frozen=True)
class ChoicesRule:
    """Where a row's answer choices are: `field` holds a mapping of two lists (ARC, CSQA:
    {text: [...], label: [...]}), named by `text` and `label`; or, without them, a list of
    texts labelled A, B, C... The prompt always shows them lettered A, B, C... in order."""

    field: str
    text: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str  # the file's stem: "arc_challenge"
    ref: str  # as the config named it: a built-in name or a path
    hub: str  # the Hub dataset id, e.g. "allenai/ai2_arc"
    config: str | None  # the Hub config, e.g. "ARC-Challenge"
    split: str
    question: FieldRule
    answer: FieldRule
    answer_type: str
    prompt: str | dict  # a template name or YAML path, or an inline template mapping
    choices: ChoicesRule | None = None
    description: str = ""

    @property
    def prompt_ref(self) -> str:
        """What `RunConfig.prompt` names to get this benchmark's template (see load_template)."""
        return self.prompt if isinstance(self.prompt, str) else f"benchmark:{self.ref}"


def known_benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCHMARK_DIR.glob("*.yaml"))


def benchmark_path(name_or_path: str) -> Path:
    """The file of a built-in benchmark name, or a YAML path (tried as given, then from the
    repository root, as config paths are)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UserError(f"dataset.benchmark must be a benchmark name or a YAML path, got {name_or_path!r}")
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path).expanduser()
        if not path.is_file() and not path.is_absolute() and (_REPO_ROOT / path).is_file():
            path = _REPO_ROOT / path
        if not path.is_file():
            raise UserError(f"benchmark file not found: {name_or_path}")
        return path
    path = BENCHMARK_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"unknown benchmark '{name_or_path}' (known: {', '.join(known_benchmarks())}; or a YAML path)")
    return path


def read_benchmark(name_or_path: str) -> BenchmarkSpec:
    """The benchmark `name_or_path` names, its shape checked; UserError naming the file otherwise."""
    path = benchmark_path(name_or_path)
    where = f"benchmark {path}"
    raw = read_yaml(path, where)
    raw = _mapping(raw, where, _TOP_KEYS, required=("source", "fields", "answer_type", "prompt"))
    source = _mapping(raw["source"], f"{where}: source", ("hub", "config", "split"), required=("hub", "split"))
    fields = _mapping(raw["fields"], f"{where}: fields", FIELD_ROLES, required=("question", "answer"))
    answer_type = raw["answer_type"]
    if answer_type not in ANSWER_TYPES:
        raise UserError(f"{where}: unknown answer_type {answer_type!r} (known: {', '.join(ANSWER_TYPES)})")
    choices = choices_rule(fields["choices"], f"{where}: fields.choices") if "choices" in fields else None
    if (choices is None) != (answer_type != "choice"):
        raise UserError(f"{where}: fields.choices is needed by, and only by, answer_type choice")
    prompt = raw["prompt"]
    if not (isinstance(prompt, str) and prompt.strip()) and not isinstance(prompt, dict):
        raise UserError(f"{where}: prompt must name a template or be a template mapping, got {prompt!r}")
    for key in ("hub", "split", "config"):
        if key in source and not (isinstance(source[key], str) and source[key].strip()):
            raise UserError(f"{where}: source.{key} must be a non-empty string, got {source[key]!r}")
    return BenchmarkSpec(
        name=path.stem, ref=name_or_path, hub=source["hub"], config=source.get("config"), split=source["split"],
        question=field_rule(fields["question"], f"{where}: fields.question"),
        answer=field_rule(fields["answer"], f"{where}: fields.answer"),
        answer_type=answer_type, prompt=prompt, choices=choices, description=str(raw.get("description", "")),
    )


def _mapping(raw: Any, where: str, known: tuple[str, ...], required: tuple[str, ...]) -> dict:
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with keys {', '.join(known)}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown} (known: {', '.join(known)})")
    missing = [k for k in required if k not in raw]
    if missing:
        raise UserError(f"{where}: missing key(s) {missing}")
    return raw


def field_overrides(raw: Any, where: str) -> dict[str, FieldRule | ChoicesRule]:
    """A config's `dataset.fields`: rules for some of the roles, each as a benchmark file writes it."""
    raw = _mapping(raw, where, FIELD_ROLES, required=())
    return {role: (choices_rule if role == "choices" else field_rule)(value, f"{where}.{role}") for role, value in raw.items()}


def field_rule(raw: Any, where: str) -> FieldRule:
    if isinstance(raw, str) and raw:
        return FieldRule(field=raw)
    raw = _mapping(raw, where, ("field", "format", "after", "before"), required=())
    if ("field" in raw) == ("format" in raw):
        raise UserError(f"{where}: give exactly one of 'field' (a field name) or 'format' (\"{{A}} {{B}}\")")
    for key, value in raw.items():
        if not isinstance(value, str) or not value:
            raise UserError(f"{where}.{key} must be a non-empty string, got {value!r}")
    if "format" in raw:
        try:
            names = [n for _, n, _, _ in string.Formatter().parse(raw["format"])]
        except ValueError as exc:
            raise UserError(f"{where}.format: {exc}") from None
        if not any(names) or any(n is not None and not n.isidentifier() for n in names):
            raise UserError(f"{where}.format must name fields as {{name}}, got {raw['format']!r}")
    return FieldRule(**raw)


def choices_rule(raw: Any, where: str) -> ChoicesRule:
    if isinstance(raw, str) and raw:
        return ChoicesRule(field=raw)
    raw = _mapping(raw, where, ("field", "text", "label"), required=("field",))
    if ("text" in raw) != ("label" in raw):
        raise UserError(f"{where}: give both 'text' and 'label' (a mapping of two lists), or neither (a list of texts)")
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise UserError(f"{where}: field, text and label must be non-empty strings")
    return ChoicesRule(**raw)
