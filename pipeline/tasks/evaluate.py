"""Evaluation: (strategy × examples) split into units, each decoded into result rows, and
the per-strategy summary."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config import RunConfig, StrategySpec
from pipeline.data.answers import score_answer
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, load_template, prompt_hash
from pipeline.decoding.decoder import Decoder, Generation
from pipeline.decoding.strategies import Strategy
from pipeline.errors import UserError
from pipeline.models.facts import model_facts
from pipeline.runtime.job import Job, batches, finish, run_units
from pipeline.store.schemas import RESULT_SCHEMA
from predictor.online import build_strategy

_BUILT: dict[str, Strategy] = {}


def built_strategy(spec: StrategySpec) -> Strategy:
    """The strategy of a config entry, built once per process (an α-predictor artifact is
    loaded once, by `predictor.online.build_strategy`)."""
    if spec.label not in _BUILT:
        _BUILT[spec.label] = build_strategy(spec.name, spec.params)
    return _BUILT[spec.label]


@dataclass(frozen=True)
class EvalUnit:
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


def make_units(strategies: Sequence[StrategySpec], examples: Sequence[Example], batch_size: int, dataset: str, split: str) -> Iterator[EvalUnit]:
    """Deterministic for a config, so a rerun finds the units already written."""
    for si, spec in enumerate(strategies):
        for bi, batch in batches(examples, batch_size):
            yield EvalUnit(si, bi, spec, batch, dataset, split)


def decode_unit(decoder: Decoder, template: PromptTemplate, unit: EvalUnit, worker_id: str = "", node_id: str = "") -> list[dict]:
    """Decode one unit and turn each generation into a result row (RESULT_SCHEMA)."""
    strategy = built_strategy(unit.strategy)
    prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in unit.examples]
    start = time.perf_counter()
    gens = decoder.generate(strategy, prompts)
    share = (time.perf_counter() - start) / len(prompts)
    return [
        result_row(unit, strategy, ex, gen, prompt_hash(template, ex.question), worker_id, node_id, share)
        for ex, gen in zip(unit.examples, gens)
    ]


def teacher_mask(gen: Generation) -> list[bool]:
    taken = set(gen.teacher_positions)
    return [i in taken for i in range(len(gen.token_ids))]


def result_row(unit: EvalUnit, strategy: Strategy, ex: Example, gen: Generation, p_hash: str, worker_id: str, node_id: str, latency: float) -> dict:
    params = strategy.params()  # resolved: an artifact's N and band, not only what the YAML said
    predicted, correct = score_answer(gen.text, ex.gold)
    return {
        "example_id": ex.id,
        "dataset": unit.dataset,
        "split": unit.split,
        "group": ex.group,
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
        "correct": correct,
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


def strategy_stats(correct: Sequence[bool], teacher_tokens: Sequence[int], latency_s: Sequence[float]) -> dict:
    """Accuracy, teacher tokens per example and examples per busy worker-second of some rows."""
    n, busy = len(correct), float(sum(latency_s))
    return {"accuracy": float(sum(correct)) / n if n else 0.0, "n": n,
            "teacher_tokens_per_example": float(sum(teacher_tokens)) / n if n else 0.0,
            "examples_per_s": n / busy if busy > 0 else 0.0}


def summarize(table: pa.Table, strategies: Sequence[StrategySpec]) -> list[dict]:
    """One entry per configured strategy, in config order."""
    df = table.select(["strategy", "correct", "teacher_tokens", "latency_s"]).to_pandas()
    out = []
    for spec in strategies:
        rows = df[df["strategy"] == spec.label]
        out.append({
            "name": spec.name,
            "label": spec.label,
            "params": spec.params,
            "resolved_params": built_strategy(spec).params(),  # what it ran with: an artifact's α, N and band
            **strategy_stats(rows["correct"].tolist(), rows["teacher_tokens"].tolist(), rows["latency_s"].tolist()),
        })
    return out


def format_table(summary: list[dict]) -> str:
    width = max([len("strategy"), *(len(s["label"]) for s in summary)])
    header = f"{'strategy':<{width}} {'accuracy':>8} {'n':>6} {'teacher tok/ex':>14} {'ex/s':>8}"
    lines = [header, "-" * len(header)]
    for s in summary:
        lines.append(
            f"{s['label']:<{width}} {s['accuracy']:>8.3f} {s['n']:>6d} {s['teacher_tokens_per_example']:>14.2f} {s['examples_per_s']:>8.2f}"
        )
    return "\n".join(lines)


class StrategyTally:
    """A line per strategy as its last unit of this run arrives: accuracy, examples/s and
    teacher tokens per example over the rows this run decoded for it (so a long job shows
    where it stands; the summary at the end covers every row)."""

    def __init__(self, units: list[EvalUnit]):
        self.left = Counter(u.strategy.label for u in units)
        self.rows: dict[str, list[dict]] = {}
        self.started = time.monotonic()

    def __call__(self, unit: EvalUnit, rows: list[dict]) -> str | None:
        label = unit.strategy.label
        self.rows.setdefault(label, []).extend(rows)
        self.left[label] -= 1
        if self.left[label]:
            return None
        done = self.rows.pop(label)
        st = strategy_stats([r["correct"] for r in done], [r["teacher_tokens"] for r in done], [r["latency_s"] for r in done])
        return (f"{label}: accuracy {st['accuracy']:.3f} on {st['n']} examples, {st['examples_per_s']:.1f} ex/s, "
                f"{st['teacher_tokens_per_example']:.2f} teacher tokens/example ({time.monotonic() - self.started:.0f} s into this run)")


def run_evaluation(config: RunConfig, out: str) -> list[dict]:
    """Evaluate every configured strategy on the dataset into `out/results`; returns the summary."""
    if not config.strategies:
        raise UserError("config: 'strategies' is empty: list at least one strategy to evaluate")
    load_template(config.prompt)  # a bad template fails before anything starts
    student = model_facts(config.student).identity
    for spec in config.strategies:
        built_strategy(spec).check_student(student)
    examples = load_examples(config.dataset)
    units = list(make_units(config.strategies, examples, config.decoding.batch_size, config.dataset.name, config.dataset.split))
    job = Job("evaluate", "results", RESULT_SCHEMA, units, len(examples) * len(config.strategies),
              ignored_config=("labels", "signals", "export"), tally=StrategyTally)
    table, manifest = run_units(config, out, job, examples)
    summary = summarize(table, config.strategies)
    finish(out, job, manifest, "summary.json", {"strategies": summary})
    return summary
