"""The α-label job: units of examples labelled by the prefix tree, Parquet label rows, summary."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from pipeline.alpha_tree import ExampleLabels, LabelSettings, label_batch
from pipeline.answers import answers_match, extract_answer, normalize_number
from pipeline.benchmarks import Example, load_examples
from pipeline.config import RunConfig
from pipeline.decoding import Decoder
from pipeline.evaluation import prompt_hash
from pipeline.models import load_hidden_size, load_num_layers, model_identity
from pipeline.orchestration import Job, finish, run_units
from pipeline.prompts import PromptTemplate, encode_prompt, load_template


def label_schema(feature_dim: int) -> pa.Schema:
    floats, ints = pa.list_(pa.float64()), pa.list_(pa.int64())
    return pa.schema(
        [
            pa.field("example_id", pa.string(), nullable=False),
            pa.field("dataset", pa.string()),
            pa.field("split", pa.string()),
            pa.field("student", pa.string()),
            pa.field("teacher", pa.string()),
            pa.field("n_tokens", pa.int64()),
            pa.field("prompt_hash", pa.string()),
            pa.field("gold_answer", pa.string()),
            # one entry per grid α, in grid order
            pa.field("alpha_grid", floats),
            pa.field("first_tokens", pa.list_(ints)),
            pa.field("answers", pa.list_(pa.string())),
            pa.field("correct", pa.list_(pa.bool_())),
            pa.field("interval_of_alpha", ints),  # index into the interval_* columns
            # one entry per distinct leaf: the exact α interval giving its first-N tokens
            pa.field("interval_lo", floats),
            pa.field("interval_hi", floats),
            pa.field("interval_first_tokens", pa.list_(ints)),
            pa.field("interval_answer", pa.list_(pa.string())),
            pa.field("interval_correct", pa.list_(pa.bool_())),
            # student features and first-token statistics
            pa.field("features", pa.list_(pa.float32(), feature_dim)),
            pa.field("feature_layers", ints),
            pa.field("feature_pool", pa.string()),
            pa.field("student_entropy", pa.float64()),
            pa.field("teacher_entropy", pa.float64()),
            pa.field("student_top1_prob", pa.float64()),
            pa.field("teacher_top1_prob", pa.float64()),
            pa.field("kl_teacher_student", pa.float64()),
            pa.field("jsd", pa.float64()),
            pa.field("argmax_agree", pa.bool_()),
            # cost
            pa.field("distinct_leaves", pa.int64()),
            pa.field("student_tokens_processed", pa.int64()),
            pa.field("teacher_tokens_processed", pa.int64()),
            pa.field("worker_id", pa.string()),
            pa.field("node_id", pa.string()),
            pa.field("latency_s", pa.float64()),
        ]
    )


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
        answers = [normalize_number(extract_answer(leaf.gen.text)) for leaf in lab.leaves]
        correct = [answers_match(a, ex.gold) for a in answers]
        return {
            "example_id": ex.id,
            "dataset": self.dataset,
            "split": self.split,
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


def feature_dim(config: RunConfig) -> int:
    settings = config.labels
    hidden = load_hidden_size(config.student)
    return hidden if settings.feature_pool == "mean" else hidden * len(settings.feature_layers)


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
    settings.check_against(config.decoding.max_new_tokens, load_num_layers(config.student))
    load_template(config.prompt)
    examples = load_examples(config.dataset)
    size = config.decoding.batch_size
    units = [
        LabelUnit(bi, tuple(examples[s : s + size]), settings, config.dataset.name, config.dataset.split,
                  model_identity(config.student), model_identity(config.teacher))
        for bi, s in enumerate(range(0, len(examples), size))
    ]
    job = Job("label_alpha", "labels", label_schema(feature_dim(config)), units, len(examples),
              manifest_name="labels_manifest.json", ignored_config=("strategies", "signals", "export"))
    table, manifest = run_units(config, out, job, examples)
    summary = summarize_labels(table)
    finish(out, job, manifest, "label_summary.json", summary)
    return summary
