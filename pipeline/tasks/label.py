"""The α-label job: units of examples labelled by the prefix tree, Parquet label rows, summary."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config import LabelSettings, RunConfig
from pipeline.config.sections import PositionSettings
from pipeline.data.answer_types import score
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, load_template, prompt_hash
from pipeline.decoding.alpha_tree import ExampleLabels, NLabels, label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.position_labels import PositionLabels, label_positions
from pipeline.models.facts import ModelFacts, model_facts
from pipeline.runtime.job import Job, batches, finish, run_units
from pipeline.stats.intervals import wilson_interval
from pipeline.store.schemas import label_schema


@dataclass(frozen=True)
class LabelUnit:
    batch_index: int
    examples: tuple[Example, ...]
    settings: LabelSettings
    dataset: str
    split: str
    student: str
    teacher: str

    @property
    def part_name(self) -> str:
        return f"part-b{self.batch_index:06d}.parquet"

    def run(self, decoder: Decoder, template: PromptTemplate, worker_id: str = "", node_id: str = "") -> list[dict]:
        prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in self.examples]
        start = time.perf_counter()
        labels = label_batch(decoder, prompts, self.settings)
        places = self.settings.positions
        positions = label_positions(decoder, prompts, places) if places is not None else [None] * len(prompts)
        share = (time.perf_counter() - start) / len(prompts)
        rows = []
        for ex, lab, pos in zip(self.examples, labels, positions):
            row = self.row(ex, lab, prompt_hash(template, ex.question, decoder.tokenizer), worker_id, node_id, share)
            if pos is not None:
                row.update(position_columns(ex, pos, places))
                row["student_tokens_processed"] += pos.student_tokens_processed
                row["teacher_tokens_processed"] += pos.teacher_tokens_processed
            rows.append(row)
        return rows

    def row(self, ex: Example, lab: ExampleLabels, p_hash: str, worker_id: str, node_id: str, latency: float) -> dict:
        leaves = [leaf for part in lab.per_n for leaf in part.leaves]  # every N's leaves, scored in one pass
        scores = [score(leaf.gen.text, ex) for leaf in leaves]
        answers, correct = [s.answer for s in scores], [s.correct for s in scores]
        per_n, at = [], 0
        for part in lab.per_n:
            size = len(part.leaves)
            per_n.append(n_columns(part, answers[at:at + size], correct[at:at + size]))
            at += size
        main = per_n[self.settings.n_grid.index(self.settings.n_tokens)]
        return {
            "example_id": ex.id,
            "dataset": self.dataset,
            "split": self.split,
            "group": ex.group,
            "student": self.student,
            "teacher": self.teacher,
            "n_tokens": self.settings.n_tokens,
            "prompt_hash": p_hash,
            "gold_answer": ex.gold,
            "alpha_grid": list(self.settings.alpha_grid),
            **main,
            "n_grid": list(self.settings.n_grid),
            **{f"{key}_per_n": [part[key] for part in per_n] for key in PER_N_COLUMNS},
            "features": lab.features,
            "feature_layers": list(self.settings.feature_layers),
            "feature_pool": self.settings.feature_pool,
            **lab.first_token,
            "distinct_continuations": lab.continuations,
            "student_tokens_processed": lab.student_tokens_processed,
            "teacher_tokens_processed": lab.teacher_tokens_processed,
            "worker_id": worker_id,
            "node_id": node_id,
            "latency_s": latency,
        }


def position_columns(ex: Example, pos: PositionLabels, settings: PositionSettings) -> dict:
    """A label row's position columns."""
    scored = {id(g): score(g.text, ex) for row in pos.answers for g in row}
    own = score(pos.greedy.text, ex)
    return {
        "greedy_token_ids": pos.greedy.token_ids,
        "greedy_answer": own.answer,
        "greedy_correct": own.correct,
        "student_entropy_trace": pos.entropy,
        "student_margin_trace": pos.margin,
        "position_alpha_grid": list(settings.alpha_grid),
        "position_steps": pos.steps,
        "position_tokens": pos.tokens,
        "position_answers": [[scored[id(g)].answer for g in row] for row in pos.answers],
        "position_correct": [[scored[id(g)].correct for g in row] for row in pos.answers],
    }


# the columns of one N that the label rows repeat per N of the grid (as KEY_per_n)
PER_N_COLUMNS = ("first_tokens", "answers", "correct", "interval_of_alpha", "interval_lo", "interval_hi",
                 "interval_correct", "distinct_leaves")


def n_columns(part: NLabels, answers: list, correct: list) -> dict:
    """The label columns of one N: per grid α, then per distinct leaf (the exact α interval)."""
    n, leaves = part.n_tokens, part.leaves
    return {
        "first_tokens": [leaves[i].gen.token_ids[:n] for i in part.leaf_of_alpha],
        "answers": [answers[i] for i in part.leaf_of_alpha],
        "correct": [correct[i] for i in part.leaf_of_alpha],
        "interval_of_alpha": part.leaf_of_alpha,
        "interval_lo": [leaf.lo for leaf in leaves],
        "interval_hi": [leaf.hi for leaf in leaves],
        "interval_first_tokens": [leaf.gen.token_ids[:n] for leaf in leaves],
        "interval_answer": answers,
        "interval_correct": correct,
        "distinct_leaves": len(leaves),
    }


def feature_dim(settings: LabelSettings, student: ModelFacts) -> int:
    return student.hidden_size if settings.feature_pool == "mean" else student.hidden_size * len(settings.feature_layers)


def summarize_labels(table: pa.Table) -> dict:
    """Accuracy per grid α, the oracle (any α correct), and the work done; per (α, N) and
    the oracle per N over the N grid (labels of older versions: their single N)."""
    columns = ["alpha_grid", "n_tokens", "correct", "distinct_leaves", "student_tokens_processed", "teacher_tokens_processed"]
    with_grid = "correct_per_n" in table.column_names
    df = table.select(columns + (["n_grid", "correct_per_n", "distinct_continuations"] if with_grid else [])).to_pandas()
    grid = list(df["alpha_grid"].iloc[0])
    correct = [list(c) for c in df["correct"]]
    per_alpha = [sum(c[i] for c in correct) / len(correct) for i in range(len(grid))]
    n_grid = [int(n) for n in df["n_grid"].iloc[0]] if with_grid else [int(df["n_tokens"].iloc[0])]
    per_n = [[list(c) for c in rows] for rows in df["correct_per_n"]] if with_grid else [[c] for c in correct]
    cell = {(ni, ai): sum(row[ni][ai] for row in per_n) / len(per_n) for ni in range(len(n_grid)) for ai in range(len(grid))}
    return {
        "n": len(df),
        "n_tokens": int(df["n_tokens"].iloc[0]),
        "accuracy_per_alpha": [{"alpha": a, "accuracy": acc, **_bounds(acc, len(correct))} for a, acc in zip(grid, per_alpha)],
        "oracle_accuracy": sum(any(c) for c in correct) / len(correct),
        "oracle_accuracy_interval": _bounds(sum(any(c) for c in correct) / len(correct), len(correct)),
        "n_grid": n_grid,
        "accuracy_per_alpha_n": [{"alpha": a, "n_tokens": n, "accuracy": cell[ni, ai]}
                                 for ni, n in enumerate(n_grid) for ai, a in enumerate(grid)],
        "oracle_accuracy_per_n": [{"n_tokens": n, "accuracy": sum(any(row[ni]) for row in per_n) / len(per_n)}
                                  for ni, n in enumerate(n_grid)],
        "leaves_per_example": float(df["distinct_leaves"].mean()),
        "continuations_per_example": float(df["distinct_continuations"].mean()) if with_grid else float(df["distinct_leaves"].mean()),
        "student_tokens_processed": int(df["student_tokens_processed"].sum()),
        "teacher_tokens_processed": int(df["teacher_tokens_processed"].sum()),
        "positions": position_summary(table),
    }


def position_summary(table: pa.Table) -> dict | None:
    """The student's greedy accuracy, and per position α the share of examples one teacher
    token at some labelled step answers right (each with its 95 % interval)."""
    if "position_steps" not in table.column_names or table.column("position_steps").null_count == table.num_rows:
        return None
    df = table.select(["greedy_correct", "position_alpha_grid", "position_correct"]).to_pandas().dropna()
    grid = [float(a) for a in df["position_alpha_grid"].iloc[0]]
    n = len(df)
    greedy = int(df["greedy_correct"].sum())
    per_alpha = [int(sum(any(step[i] for step in steps) for steps in df["position_correct"])) for i in range(len(grid))]
    return {"n": n, "greedy_accuracy": greedy / n, "greedy_interval": _bounds(greedy / n, n),
            "one_token_oracle": [{"alpha": a, "accuracy": k / n, **_bounds(k / n, n)} for a, k in zip(grid, per_alpha)]}


def _bounds(share: float, n: int) -> dict:
    lo, hi = wilson_interval(round(share * n), n)
    return {"lo": lo, "hi": hi}


def format_label_summary(summary: dict) -> str:
    n_grid = summary.get("n_grid", [summary.get("n_tokens")])
    if len(n_grid) > 1:
        lines = [alpha_n_table(summary)]
    else:
        lines = [f"{'alpha':>7} {'accuracy [95 % interval]':>25}", "-" * 33]
        lines += [f"{row['alpha']:>7.2f} {row['accuracy']:>9.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"
                  for row in summary["accuracy_per_alpha"]]
        oracle = summary["oracle_accuracy_interval"]
        lines.append(f"oracle (any α correct): {summary['oracle_accuracy']:.3f} [{oracle['lo']:.3f}, {oracle['hi']:.3f}]   "
                     f"examples: {summary['n']}")
    if positions := summary.get("positions"):
        lines.append(f"position labels: student greedy {positions['greedy_accuracy']:.3f}; one teacher token at some labelled "
                     "step right: " + ", ".join(f"α={row['alpha']:g} {row['accuracy']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"
                                                for row in positions["one_token_oracle"]))
    lines.append(
        f"distinct leaves per example: {summary['leaves_per_example']:.2f}   tokens processed: "
        f"student {summary['student_tokens_processed']}, teacher {summary['teacher_tokens_processed']}"
    )
    return "\n".join(lines)


def alpha_n_table(summary: dict) -> str:
    """Accuracy per α (rows) and N (columns), the oracle per N below."""
    n_grid = summary["n_grid"]
    acc = {(row["alpha"], row["n_tokens"]): row["accuracy"] for row in summary["accuracy_per_alpha_n"]}
    alphas = list(dict.fromkeys(row["alpha"] for row in summary["accuracy_per_alpha_n"]))
    head = f"{'alpha':>7} " + " ".join(f"{f'N={n}':>7}" for n in n_grid)
    n = summary["n"]
    half = max(max(a - lo, hi - a) for a in acc.values() for lo, hi in [wilson_interval(round(a * n), n)])
    lines = [f"accuracy per (α, N) over {summary['n']} examples (each within ±{half:.3f}, 95 %)", head, "-" * len(head)]
    lines += [f"{a:>7.2f} " + " ".join(f"{acc[a, n]:>7.3f}" for n in n_grid) for a in alphas]
    oracle = {row["n_tokens"]: row["accuracy"] for row in summary["oracle_accuracy_per_n"]}
    lines.append(f"{'oracle':>7} " + " ".join(f"{oracle[n]:>7.3f}" for n in n_grid))
    lines.append(f"(single-N columns: N={summary['n_tokens']}; distinct continuations per example, all N: "
                 f"{summary['continuations_per_example']:.2f})")
    return "\n".join(lines)


def run_labels(config: RunConfig, out: str) -> dict:
    """Label every example of the configured dataset into `out/labels`; returns the summary."""
    settings = config.labels
    student, teacher = model_facts(config.student), model_facts(config.teacher)
    settings.check_against(config.decoding.max_new_tokens, student.num_layers)
    load_template(config.prompt)
    examples = load_examples(config.dataset)
    units = [
        LabelUnit(bi, batch, settings, config.dataset.name, config.dataset.split, student.identity, teacher.identity)
        for bi, batch in batches(examples, config.decoding.batch_size)
    ]
    job = Job("label_alpha", "labels", label_schema(feature_dim(settings, student)), units, len(examples),
              manifest_name="labels_manifest.json", ignored_config=("strategies", "signals", "export"))
    data, manifest = run_units(config, out, job, examples)
    summary = summarize_labels(data.read())
    finish(out, job, manifest, "label_summary.json", summary)
    return summary
