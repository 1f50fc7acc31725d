"""The α-label job: units of examples labelled by the prefix tree, Parquet label rows, summary."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config import LabelSettings, RunConfig
from pipeline.data.answers import score_answer
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, load_template, prompt_hash
from pipeline.decoding.alpha_tree import ExampleLabels, label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.models.facts import ModelFacts, model_facts
from pipeline.runtime.job import Job, batches, finish, run_units
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
        share = (time.perf_counter() - start) / len(prompts)
        return [
            self.row(ex, lab, prompt_hash(template, ex.question), worker_id, node_id, share)
            for ex, lab in zip(self.examples, labels)
        ]

    def row(self, ex: Example, lab: ExampleLabels, p_hash: str, worker_id: str, node_id: str, latency: float) -> dict:
        n = self.settings.n_tokens
        answers, correct = map(list, zip(*(score_answer(leaf.gen.text, ex.gold) for leaf in lab.leaves)))
        return {
            "example_id": ex.id,
            "dataset": self.dataset,
            "split": self.split,
            "group": ex.group,
            "student": self.student,
            "teacher": self.teacher,
            "n_tokens": n,
            "prompt_hash": p_hash,
            "gold_answer": ex.gold,
            "alpha_grid": list(self.settings.alpha_grid),
            "first_tokens": [lab.leaves[i].gen.token_ids[:n] for i in lab.leaf_of_alpha],
            "answers": [answers[i] for i in lab.leaf_of_alpha],
            "correct": [correct[i] for i in lab.leaf_of_alpha],
            "interval_of_alpha": lab.leaf_of_alpha,
            "interval_lo": [leaf.lo for leaf in lab.leaves],
            "interval_hi": [leaf.hi for leaf in lab.leaves],
            "interval_first_tokens": [leaf.gen.token_ids[:n] for leaf in lab.leaves],
            "interval_answer": answers,
            "interval_correct": correct,
            "features": lab.features,
            "feature_layers": list(self.settings.feature_layers),
            "feature_pool": self.settings.feature_pool,
            **lab.first_token,
            "distinct_leaves": len(lab.leaves),
            "student_tokens_processed": lab.student_tokens_processed,
            "teacher_tokens_processed": lab.teacher_tokens_processed,
            "worker_id": worker_id,
            "node_id": node_id,
            "latency_s": latency,
        }


def feature_dim(settings: LabelSettings, student: ModelFacts) -> int:
    return student.hidden_size if settings.feature_pool == "mean" else student.hidden_size * len(settings.feature_layers)


def summarize_labels(table: pa.Table) -> dict:
    """Accuracy per grid α, the oracle (any α correct), and the work done."""
    df = table.select(["alpha_grid", "correct", "distinct_leaves", "student_tokens_processed", "teacher_tokens_processed"]).to_pandas()
    grid = list(df["alpha_grid"].iloc[0])
    correct = [list(c) for c in df["correct"]]
    per_alpha = [sum(c[i] for c in correct) / len(correct) for i in range(len(grid))]
    return {
        "n": len(df),
        "accuracy_per_alpha": [{"alpha": a, "accuracy": acc} for a, acc in zip(grid, per_alpha)],
        "oracle_accuracy": sum(any(c) for c in correct) / len(correct),
        "leaves_per_example": float(df["distinct_leaves"].mean()),
        "student_tokens_processed": int(df["student_tokens_processed"].sum()),
        "teacher_tokens_processed": int(df["teacher_tokens_processed"].sum()),
    }


def format_label_summary(summary: dict) -> str:
    lines = [f"{'alpha':>7} {'accuracy':>9}", "-" * 17]
    lines += [f"{row['alpha']:>7.2f} {row['accuracy']:>9.3f}" for row in summary["accuracy_per_alpha"]]
    lines.append(f"oracle (any α correct): {summary['oracle_accuracy']:.3f}   examples: {summary['n']}")
    lines.append(
        f"distinct leaves per example: {summary['leaves_per_example']:.2f}   tokens processed: "
        f"student {summary['student_tokens_processed']}, teacher {summary['teacher_tokens_processed']}"
    )
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
    table, manifest = run_units(config, out, job, examples)
    summary = summarize_labels(table)
    finish(out, job, manifest, "label_summary.json", summary)
    return summary
