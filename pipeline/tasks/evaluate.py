"""Evaluation: (strategy × examples) split into units, each decoded into result rows, and
the per-strategy summary (per benchmark and strategy, in a run over several benchmarks)."""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config import DatasetSpec, RunConfig, StrategySpec
from pipeline.data.answer_span import span_finder
from pipeline.data.answer_types import score
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, load_template, prompt_hash
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.generation import Generation
from pipeline.decoding.shared_batch import decode_strategies
from pipeline.decoding.strategies import Strategy, build_strategy, check_strategies
from pipeline.errors import UserError
from pipeline.models.facts import model_facts
from pipeline.models.loading import load_tokenizer
from pipeline.runtime.job import Job, batches, finish, run_units
from pipeline.runtime.placement import run_stop_rule
from pipeline.runtime.runaway import RunawayWatch
from pipeline.stats.intervals import Estimate, accuracy, paired_difference
from pipeline.store.schemas import BENCHMARK_KEY, RESULT_SCHEMA, TEACHER_COSTS as COSTS
from predictor.online import load_online


def built_strategy(spec: StrategySpec) -> Strategy:
    """The strategy of a config entry (a small frozen value, cheap to build; an α-predictor
    artifact it names is loaded once per process, by `predictor.online.load_online`)."""
    return build_strategy(spec.name, spec.params, load_online)


def for_examples(strategy: Strategy, examples: Sequence[Example]) -> Strategy:
    """The strategy as it decodes these examples (one benchmark's: a unit never mixes two),
    with their answer type's span finder (CoT-decoding measures confidence on it)."""
    letters = sorted({c for ex in examples for c in ex.choices})
    return strategy.with_answer_span(span_finder(examples[0].answer_type, letters))


@dataclass(frozen=True)
class EvalUnit:
    """One batch of examples under every strategy of the run: the unit of scheduling, output
    and resume. The strategies share the batch's prefills and its student-greedy decode."""

    batch_index: int  # counts within the unit's dataset
    strategies: tuple[StrategySpec, ...]
    examples: tuple[Example, ...]
    dataset: str
    split: str
    # the template to encode with, in a run over several benchmarks (each entry's own, unless
    # the run's `prompt` is set); None: the worker's, the run's one template
    prompt: str | None = None
    partitioned: bool = False  # written under results/benchmark=<dataset>/ (a `datasets` run)

    @property
    def part_name(self) -> str:
        name = f"part-b{self.batch_index:06d}.parquet"
        return f"{BENCHMARK_KEY}={self.dataset}/{name}" if self.partitioned else name

    def run(self, decoder: Decoder, template: PromptTemplate, worker_id: str = "", node_id: str = "") -> list[dict]:
        return decode_unit(decoder, template, self, worker_id, node_id)


def make_units(strategies: Sequence[StrategySpec], examples: Iterable[Example], batch_size: int, dataset: str, split: str,
               prompt: str | None = None, partitioned: bool = False) -> Iterator[EvalUnit]:
    """Deterministic for a config, so a rerun finds the units already written."""
    for bi, batch in batches(examples, batch_size):
        yield EvalUnit(bi, tuple(strategies), batch, dataset, split, prompt, partitioned)


def evaluation_units(config: RunConfig, per_dataset: Sequence[tuple[DatasetSpec, list[Example]]]) -> list[EvalUnit]:
    """A run over one `dataset` writes flat parts, as it always did (its earlier runs resume);
    each entry of a `datasets` list fills its own partition, encoded with its own template."""
    size = config.decoding.batch_size
    if not config.datasets:
        [(spec, examples)] = per_dataset
        return list(make_units(config.strategies, examples, size, spec.name, spec.split))
    return [unit for spec, examples in per_dataset
            for unit in make_units(config.strategies, examples, size, spec.name, spec.split, config.prompt_for(spec), True)]


def decode_unit(decoder: Decoder, template: PromptTemplate, unit: EvalUnit, worker_id: str = "", node_id: str = "") -> list[dict]:
    """Decode one unit under every strategy and turn each generation into a result row
    (RESULT_SCHEMA). A row's latency is its strategy's own time plus an equal share of the
    work the strategies shared, per example."""
    strategies = [for_examples(built_strategy(spec), unit.examples) for spec in unit.strategies]
    prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in unit.examples]
    per_strategy, shared_s = decode_strategies(decoder, strategies, prompts)
    hashes = [prompt_hash(template, ex.question, decoder.tokenizer) for ex in unit.examples]
    rows = []
    for spec, strategy, done in zip(unit.strategies, strategies, per_strategy):
        share = (done.own_s + shared_s / len(strategies)) / len(prompts)
        rows += [result_row(unit, spec, strategy, ex, gen, h, worker_id, node_id, share)
                 for ex, gen, h in zip(unit.examples, done.gens, hashes)]
    return rows


def teacher_mask(gen: Generation) -> list[bool]:
    taken = set(gen.teacher_positions)
    return [i in taken for i in range(len(gen.token_ids))]


def result_row(unit: EvalUnit, spec: StrategySpec, strategy: Strategy, ex: Example, gen: Generation, p_hash: str, worker_id: str, node_id: str, latency: float) -> dict:
    params = strategy.params()  # resolved: an artifact's N and band, not only what the YAML said
    scored = score(gen.text, ex)
    return {
        "example_id": ex.id,
        "dataset": unit.dataset,
        "split": unit.split,
        "group": ex.group,
        "strategy": spec.label,
        "strategy_name": spec.name,
        "params": json.dumps(params, sort_keys=True),
        "alpha": gen.alpha,
        "n_tokens": params.get("n_tokens"),
        "prompt_hash": p_hash,
        "generated_text": gen.text,
        "generated_token_ids": gen.token_ids,
        "teacher_token_mask": teacher_mask(gen),
        "predicted_answer": scored.answer,
        "gold_answer": ex.gold,
        "correct": scored.correct,
        "correct_strict": scored.correct_strict,
        "correct_flexible": scored.correct_flexible,
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.token_ids),
        "student_tokens_processed": gen.student_tokens_processed,
        "teacher_tokens_processed": gen.teacher_tokens_processed,
        "teacher_tokens": gen.teacher_tokens,
        "teacher_changed_tokens": gen.teacher_changed_tokens,
        "teacher_calls": gen.teacher_calls,
        "consultations": [dataclasses.asdict(c) for c in gen.consultations],
        "student_first_entropy": gen.student_first_entropy,
        "cot_k": gen.cot_k,
        "cot_branch": gen.cot_branch,
        "cot_confidence": gen.cot_confidence,
        "worker_id": worker_id,
        "node_id": node_id,
        "latency_s": latency,
    }


def strategy_stats(correct: Sequence[bool], costs: dict[str, Sequence[int]], latency_s: Sequence[float]) -> dict:
    """Accuracy (with its 95 % interval), the teacher's costs per example (`COSTS`: tokens it
    decided, tokens it read, calls) and examples per busy worker-second of some rows."""
    ci = accuracy(correct)
    return {**stats_of_sums(len(correct), sum(correct), {name: sum(costs[name]) for name in COSTS}, sum(latency_s)),
            "accuracy_lo": ci.lo, "accuracy_hi": ci.hi}


def stats_of_sums(n: int, correct: int, costs: dict[str, int], busy_s: float) -> dict:
    return {"accuracy": correct / n if n else 0.0, "n": n,
            **{f"{name}_per_example": costs[name] / n if n else 0.0 for name in COSTS},
            "examples_per_s": n / busy_s if busy_s > 0 else 0.0}


SUMMARY_COLUMNS = ["dataset", "strategy", "example_id", "correct", *COSTS, "latency_s"]


def summarize(table: pa.Table, strategies: Sequence[StrategySpec], benchmarks: Sequence[str] = ()) -> dict[str, list[dict]]:
    """`strategies`: one entry per configured strategy, in config order; given `benchmarks`
    (the dataset names of a `datasets` run), one per (benchmark, strategy), benchmarks in
    config order. Each entry compares itself with the run's `student` strategy on the same
    examples. `oracle`: the best of the run's fixed α per example (per benchmark), where the
    run has the student and a fixed α to choose from."""
    df = table.select([c for c in SUMMARY_COLUMNS if c != "dataset" or benchmarks]).to_pandas()
    df[list(COSTS)] = df[list(COSTS)].fillna(0)  # rows written before a cost was counted
    student = next((spec.label for spec in strategies if spec.name == "student"), None)
    parts = [(None, df)] if not benchmarks else [(name, df[df["dataset"] == name]) for name in benchmarks]
    tagged = lambda name, entry: entry if name is None else {BENCHMARK_KEY: name, **entry}  # noqa: E731
    entries = [tagged(name, strategy_entry(spec, rows[rows["strategy"] == spec.label], rows[rows["strategy"] == student]))
               for name, rows in parts for spec in strategies]
    first_n = [spec.label for spec in strategies if spec.name in ("student", "fixed_alpha")]
    oracle = [tagged(name, oracle_entry(rows, first_n, student)) for name, rows in parts] if student and len(first_n) > 1 else []
    return {"strategies": entries, "oracle": oracle}


def oracle_entry(rows, labels: list[str], student: str) -> dict:
    """Each example decoded by the cheapest of `labels` (the student and the fixed α entries)
    that answers it right, else by the student: the ceiling a per-example choice among them
    reaches."""
    own = rows[rows["strategy"] == student].set_index("example_id")["correct"].astype(bool)
    chosen = rows[rows["strategy"].isin(labels) & rows["correct"].astype(bool)]
    cheapest = chosen.sort_values("teacher_tokens", kind="stable").drop_duplicates("example_id").set_index("example_id")
    cheapest = cheapest.reindex(own.index)
    correct = cheapest["teacher_tokens"].notna()
    ci = accuracy(correct.tolist())
    return {"name": "oracle", "label": f"oracle: best of {len(labels)} fixed α per example", "params": {"of": labels},
            "accuracy": ci.value, "accuracy_lo": ci.lo, "accuracy_hi": ci.hi, "n": ci.n,
            **{f"{name}_per_example": float(cheapest[name].fillna(0).mean()) if len(own) else 0.0 for name in COSTS},
            "examples_per_s": None, "vs_student": paired_difference(correct, own).to_dict()}


def strategy_entry(spec: StrategySpec, rows, student_rows) -> dict:
    """A summary entry: the strategy as configured and as it ran, its stats over `rows`, and
    its paired difference to the student's rows of the same examples (bootstrap, 95 %)."""
    paired = rows[["example_id", "correct"]].merge(student_rows[["example_id", "correct"]], on="example_id", suffixes=("", "_student"))
    vs_student = paired_difference(paired["correct"], paired["correct_student"]).to_dict() if len(paired) else None
    return {
        "name": spec.name,
        "label": spec.label,
        "params": spec.params,
        "resolved_params": built_strategy(spec).params(),  # what it ran with: an artifact's α, N and band
        **strategy_stats(rows["correct"].tolist(), {name: rows[name].tolist() for name in COSTS}, rows["latency_s"].tolist()),
        "vs_student": vs_student,
    }


def format_table(summary: list[dict]) -> str:
    """The summary as a text table (accuracy with its 95 % interval, and the paired
    difference to the student); a benchmark column first when entries have one."""
    keys = [k for k in (BENCHMARK_KEY, "label") if summary and k in summary[0]]
    widths = {k: max([len(k if k != "label" else "strategy"), *(len(s[k]) for s in summary)]) for k in keys}
    names = " ".join(f"{k if k != 'label' else 'strategy':<{widths[k]}}" for k in keys)
    header = (f"{names} {'accuracy [95 % interval]':>25} {'vs student [95 %]':>25} {'n':>6} {'teacher tok/ex':>14} "
              f"{'read/ex':>8} {'calls/ex':>8} {'ex/s':>8}")
    lines = [header, "-" * len(header)]
    for s in summary:
        acc = f"{s['accuracy']:.3f} [{s['accuracy_lo']:.3f}, {s['accuracy_hi']:.3f}]"
        diff = s.get("vs_student")
        vs = "" if diff is None or s["name"] == "student" else Estimate.from_dict(diff).format(signed=True)
        speed = "" if s["examples_per_s"] is None else f"{s['examples_per_s']:.2f}"
        lines.append(
            " ".join(f"{s[k]:<{widths[k]}}" for k in keys)
            + f" {acc:>25} {vs:>25} {s['n']:>6d} {s['teacher_tokens_per_example']:>14.2f}"
            + f" {s['teacher_tokens_processed_per_example']:>8.1f} {s['teacher_calls_per_example']:>8.2f} {speed:>8}"
        )
    return "\n".join(lines)


class StrategyTally:
    """Where a long evaluation stands: at each quarter of this run's units, a line per strategy
    with its accuracy, examples/s and teacher tokens per example over the rows decoded so far
    (the summary at the end covers every row, resumed ones included)."""

    def __init__(self, units: list[EvalUnit], runaway: RunawayWatch | None = None):
        self.total, self.seen = len(units), 0
        self.runaway = runaway  # says rows that ran past a special token no stop rule ends
        # per strategy (per benchmark and strategy, in a `datasets` run): rows, correct, teacher costs, busy seconds
        self.sums: dict[str, dict[str, float]] = {}
        self.by_benchmark = any(u.partitioned for u in units)
        self.started = time.monotonic()

    def __call__(self, unit: EvalUnit, rows: list[dict]) -> str | None:
        for row in rows:
            label = f"{row['dataset']} {row['strategy']}" if self.by_benchmark else row["strategy"]
            sums = self.sums.setdefault(label, dict.fromkeys(("n", "correct", *COSTS, "latency_s"), 0))
            sums["n"] += 1
            for name in ("correct", *COSTS, "latency_s"):
                sums[name] += row[name]
        self.seen += 1
        notes = self.runaway(rows) if self.runaway is not None else []
        if 4 * self.seen // self.total == 4 * (self.seen - 1) // self.total:
            return "\n".join(notes) or None
        lines = [*notes, f"{self.seen} of {self.total} units ({time.monotonic() - self.started:.0f} s into this run):"]
        for label, sums in self.sums.items():
            st = stats_of_sums(sums["n"], sums["correct"], sums, sums["latency_s"])
            lines.append(f"  {label}: accuracy {st['accuracy']:.3f} on {st['n']} examples, {st['examples_per_s']:.1f} ex/s, "
                         f"{st['teacher_tokens_per_example']:.2f} teacher tokens/example "
                         f"({st['teacher_tokens_processed_per_example']:.1f} read, {st['teacher_calls_per_example']:.2f} calls)")
        return "\n".join(lines)


def run_evaluation(config: RunConfig, out: str) -> dict[str, list[dict]]:
    """Evaluate every configured strategy on the dataset(s) into `out/results` (partitioned by
    benchmark for a `datasets` list); returns the summary (`summarize`)."""
    if not config.strategies:
        raise UserError("config: 'strategies' is empty: list at least one strategy to evaluate")
    if not config.all_datasets:
        raise UserError("config: this job needs the section(s) ['dataset']")
    check_strategies(config.strategies)
    for spec in config.all_datasets:
        load_template(config.prompt_for(spec))  # a bad template fails before anything starts
    student = model_facts(config.student).identity
    for spec in config.strategies:
        strategy = built_strategy(spec)
        strategy.check_student(student)
        if note := strategy.note():
            print(f"{spec.label}: {note}")
    keys = [f"datasets.{i}" for i in range(len(config.datasets))] if config.datasets else ["dataset"]
    per_dataset = [(spec, load_examples(spec, key)) for spec, key in zip(config.all_datasets, keys)]
    examples = [ex for _, exs in per_dataset for ex in exs]
    units = evaluation_units(config, per_dataset)
    runaway = RunawayWatch(load_tokenizer(config.student), run_stop_rule(config).eos_ids, config.decoding.stop_token_ids)
    job = Job("evaluate", "results", RESULT_SCHEMA, units, len(examples) * len(config.strategies),
              ignored_config=("labels", "signals", "export"), tally=functools.partial(StrategyTally, runaway=runaway))
    data, manifest = run_units(config, out, job, examples, per_dataset)
    benchmarks = [spec.name for spec in config.datasets]
    summary = summarize(data.read(SUMMARY_COLUMNS, RESULT_SCHEMA), config.strategies, benchmarks)
    finish(out, job, manifest, "summary.json", summary)
    return summary
