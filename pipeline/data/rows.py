"""Reading one dataset row into an Example's question, gold answer and choices, as a
benchmark file (or, without one, the dataset section's fields) says."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pipeline.config.benchmark_spec import ChoicesRule, FieldRule, read_benchmark
from pipeline.config.sections import DatasetSpec
from pipeline.data.answer_types import AnswerType, answer_type
from pipeline.data.choice_answers import LETTERS, format_choices
from pipeline.errors import UserError


class RowProblem(ValueError):
    """Why a row cannot become an Example, in a few words."""


@dataclass(frozen=True)
class RowRead:
    question: str
    gold: str
    choices: tuple[str, ...]  # valid letters, for a choice question
    group: str | None


@dataclass(frozen=True)
class RowReader:
    question: FieldRule
    answer: FieldRule
    kind: AnswerType
    choices: ChoicesRule | None = None
    group_field: str | None = None
    benchmark: str | None = None

    @classmethod
    def for_spec(cls, spec: DatasetSpec) -> RowReader:
        """The benchmark's rules (or, without one, a question field and numbers after "#### " or
        as they are), with the roles `dataset.fields` maps for this copy replaced."""
        if spec.benchmark is not None:
            bench = read_benchmark(spec.benchmark)
            reader = cls(bench.question, bench.answer, answer_type(bench.answer_type), bench.choices, spec.group_field, bench.name)
        else:
            after = "#### " if spec.answer_format == "gsm8k" else None
            reader = cls(FieldRule(field=spec.question_field), FieldRule(field=spec.answer_field, after=after),
                         answer_type("number"), group_field=spec.group_field)
        rules = spec.field_rules
        if "choices" in rules and reader.kind.name != "choice":
            raise UserError(f"dataset.fields.choices applies to multiple-choice benchmarks; this one's answers are {reader.kind.name}")
        return replace(reader, **rules)

    def roles(self) -> dict[str, tuple[str, ...]]:
        """The row fields each role reads: {"question": ("Body", "Question"), "answer": ("Answer",)}."""
        roles = {"question": self.question.reads, "answer": self.answer.reads}
        if self.choices is not None:
            roles["choices"] = (self.choices.field,)
        if self.group_field is not None:
            roles["group"] = (self.group_field,)
        return roles

    @property
    def fields(self) -> tuple[str, ...]:
        """Every row field read."""
        names = [*self.question.reads, *self.answer.reads]
        names += [self.choices.field] if self.choices else []
        names += [self.group_field] if self.group_field else []
        return tuple(dict.fromkeys(names))

    def read(self, row: Any) -> RowRead:
        """The row's parts; RowProblem saying what is wrong otherwise."""
        if not isinstance(row, dict):
            raise RowProblem("not a JSON object")
        for name in self.fields:
            if name not in row or row[name] is None:
                raise RowProblem(f"missing field '{name}'")
        question = _value(self.question, row, "question")
        if not isinstance(question, str):
            raise RowProblem(f"field '{self.question.label}' is not a string")
        if not question.strip():  # the prompt would be the exemplars alone, the same for every such row
            raise RowProblem(f"field '{self.question.label}' is empty")
        labels, letters = (), ()
        if self.choices is not None:
            texts, labels = _choices(self.choices, row[self.choices.field])
            question, letters = format_choices(question, texts), tuple(LETTERS[: len(texts)])
        raw_answer = _value(self.answer, row, "answer")
        try:
            gold = self.kind.gold(raw_answer, labels)
        except ValueError as e:
            after = f" after {self.answer.after!r}" if self.answer.after else ""
            raise RowProblem(f"'{self.answer.label}' {e}{after}") from None
        group = None if self.group_field is None else str(row[self.group_field])
        return RowRead(question, gold, letters, group)


def _value(rule: FieldRule, row: dict, what: str) -> Any:
    value = row[rule.field] if rule.field is not None else rule.format.format_map({k: row[k] for k in rule.reads})
    if rule.after is None and rule.before is None:
        return value
    if not isinstance(value, str):
        raise RowProblem(f"'{rule.label}' is not a string")
    if rule.after is not None:
        if rule.after not in value:
            raise RowProblem(f"'{rule.label}' has no {rule.after!r} before the {what}")
        value = value.rsplit(rule.after, 1)[1]
    if rule.before is not None:
        value = value.split(rule.before, 1)[0]
    return value


def _choices(rule: ChoicesRule, raw: Any) -> tuple[list[str], tuple[str, ...]]:
    """(texts, labels) of a row's choices."""
    if rule.text is None:
        texts = raw
        labels = tuple(LETTERS[: len(raw)]) if isinstance(raw, list) else ()
        shape = "a list of texts"
    else:
        ok = isinstance(raw, dict) and isinstance(raw.get(rule.text), list) and isinstance(raw.get(rule.label), list)
        texts, labels = (raw[rule.text], tuple(str(x) for x in raw[rule.label])) if ok else (None, ())
        shape = f"a mapping with lists '{rule.text}' and '{rule.label}' of one length"
    if not isinstance(texts, list) or len(texts) != len(labels) or not all(isinstance(t, str) for t in texts):
        raise RowProblem(f"field '{rule.field}' is not {shape}")
    if not 2 <= len(texts) <= len(LETTERS):
        raise RowProblem(f"field '{rule.field}' has {len(texts)} choices (2 to {len(LETTERS)} can be lettered)")
    return texts, labels
