"""Benchmarks as data, the lm-evaluation-harness way: one YAML file each, in
pipeline/data/benchmarks/ (a built-in name) or anywhere (a path). Adding one is writing a file:

    description: one line
    source: {hub: ChilleD/SVAMP, split: test}          # + config: for Hub configs
    fields:
      question: {format: "{Body} {Question}"}         # or a field name
      answer: Answer                                  # or {field: answer, after: "#### "}
      # choices: {field: choices, text: text, label: label}   (answer_type choice only)
    answer_type: number                               # number | yes_no | choice | math
    prompt: gsm8k_cot_8shot                           # a template name, or a template mapping

A config picks one with `dataset: {benchmark: svamp}`, optionally reading a local copy
(`source: svamp.jsonl, split: test`); the run's prompt defaults to the benchmark's.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.benchmark_spec import BenchmarkSpec, known_benchmarks, read_benchmark
from pipeline.data.answer_types import AnswerType, answer_type
from pipeline.data.prompts import PromptTemplate, load_template

__all__ = ["Benchmark", "known_benchmarks", "load_benchmark"]


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec  # source, fields, names
    template: PromptTemplate
    answer_type: AnswerType

    @property
    def name(self) -> str:
        return self.spec.name


def load_benchmark(name_or_path: str) -> Benchmark:
    """The benchmark, its template and answer type resolved; UserError for anything missing."""
    spec = read_benchmark(name_or_path)
    return Benchmark(spec, load_template(spec.prompt_ref), answer_type(spec.answer_type))
