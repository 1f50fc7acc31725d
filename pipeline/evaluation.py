"""Evaluation: (strategy × examples) split into units, each decoded into result rows."""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.answers import answers_match, extract_answer, normalize_number
from pipeline.benchmarks import Example, load_examples
from pipeline.config import RunConfig, StrategySpec
from pipeline.decoding import Decoder, Generation
from pipeline.errors import UserError
from pipeline.models import model_identity
from pipeline.orchestration import Job, finish, run_units
from pipeline.prompts import PromptTemplate, encode_prompt, load_template
from pipeline.results_io import RESULT_SCHEMA
from pipeline.summary import summarize


@dataclass(frozen=True)
class WorkUnit:
    """One batch of examples under one strategy: the unit of scheduling, output and resume."""

    strategy_index: int
    batch_index: int
    strategy: StrategySpec
    examples: tuple[Example, ...]
    dataset: str
    split: str

    @property
    def part_name(self) -> str:
        return f"part-s{self.strategy_index:03d}-b{self.batch_index:06d}.parquet"

    def run(self, decoder: Decoder, template: PromptTemplate, worker_id: str = "", node_id: str = "") -> list[dict]:
        return decode_unit(decoder, template, self, worker_id, node_id)


def make_units(strategies: Sequence[StrategySpec], examples: Sequence[Example], batch_size: int, dataset: str, split: str) -> Iterator[WorkUnit]:
    """Deterministic for a config, so a rerun finds the units already written."""
    for si, spec in enumerate(strategies):
        for bi, start in enumerate(range(0, len(examples), batch_size)):
            yield WorkUnit(si, bi, spec, tuple(examples[start : start + batch_size]), dataset, split)


def prompt_hash(template: PromptTemplate, question: str) -> str:
    return hashlib.sha256(template.render(question).encode()).hexdigest()[:16]


def decode_unit(decoder: Decoder, template: PromptTemplate, unit: WorkUnit, worker_id: str = "", node_id: str = "") -> list[dict]:
    """Decode one unit and turn each generation into a result row (RESULT_SCHEMA)."""
    prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in unit.examples]
    start = time.perf_counter()
    gens = decoder.generate(unit.strategy.build(), prompts)
    share = (time.perf_counter() - start) / len(prompts)
    return [
        result_row(unit, ex, gen, prompt_hash(template, ex.question), worker_id, node_id, share)
        for ex, gen in zip(unit.examples, gens)
    ]


def teacher_mask(gen: Generation) -> list[bool]:
    taken = set(gen.teacher_positions)
    return [i in taken for i in range(len(gen.token_ids))]


def result_row(unit: WorkUnit, ex: Example, gen: Generation, p_hash: str, worker_id: str, node_id: str, latency: float) -> dict:
    params = unit.strategy.params
    predicted = normalize_number(extract_answer(gen.text))
    return {
        "example_id": ex.id,
        "dataset": unit.dataset,
        "split": unit.split,
        "strategy": unit.strategy.label,
        "strategy_name": unit.strategy.name,
        "params": json.dumps(params, sort_keys=True),
        "alpha": gen.alpha,
        "n_tokens": params.get("n_tokens"),
        "tau0": params.get("tau0"),
        "lam": params.get("lam"),
        "entropy_lo": params.get("lo"),
        "entropy_hi": params.get("hi"),
        "prompt_hash": p_hash,
        "generated_text": gen.text,
        "generated_token_ids": gen.token_ids,
        "teacher_token_mask": teacher_mask(gen),
        "predicted_answer": predicted,
        "gold_answer": ex.gold,
        "correct": answers_match(predicted, ex.gold),
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.token_ids),
        "student_tokens_processed": gen.student_tokens_processed,
        "teacher_tokens_processed": gen.teacher_tokens_processed,
        "teacher_tokens": gen.teacher_tokens,
        "teacher_changed_tokens": gen.teacher_changed_tokens,
        "student_first_entropy": gen.student_first_entropy,
        "worker_id": worker_id,
        "node_id": node_id,
        "latency_s": latency,
    }


def run_evaluation(config: RunConfig, out: str) -> list[dict]:
    """Evaluate every configured strategy on the dataset into `out/results`; returns the summary."""
    if not config.strategies:
        raise UserError("config: 'strategies' is empty: list at least one strategy to evaluate")
    load_template(config.prompt)  # a bad template fails before anything starts
    student = model_identity(config.student)
    for spec in config.strategies:
        spec.build().check_student(student)
    examples = load_examples(config.dataset)
    units = list(make_units(config.strategies, examples, config.decoding.batch_size, config.dataset.name, config.dataset.split))
    job = Job("evaluate", "results", RESULT_SCHEMA, units, len(examples) * len(config.strategies), ignored_config=("labels", "signals", "export"))
    table, manifest = run_units(config, out, job, examples)
    summary = summarize(table, config.strategies)
    finish(out, job, manifest, "summary.json", {"strategies": summary})
    return summary
