"""The N sweep: one prefix tree over the (α, N) grid against one label run per N.

    python -m speed.label_n_grid [--config configs/demo.yaml] [--examples 200] [--n-grid 1,2,3,5]

(a) one run per N: the label job's engine with `labels.n_tokens = N`, once for every N of
    the grid (each a tree over the α grid, each distinct leaf continued once);
(b) the N sweep: one tree grown to max(N); the leaf of (α, N) is the depth-N node of α's
    path, and a node whose α group also takes the student's own argmax shares its
    continuation with that child, so each distinct continuation is decoded once for all N.
Both run in this process on the same examples, through the label job's rows (so through its
scoring), and must give the same correctness for every (example, α, N) (checked). Tokens are
those the label rows count (prompt suffixes and steps; a cached few-shot preamble is paid
once per engine and not counted); the (α, N) accuracy table is the sweep's.
"""
from __future__ import annotations

import dataclasses
import time

import pyarrow as pa
import torch

from pipeline.data.datasets import load_examples
from pipeline.data.prompts import load_template
from pipeline.decoding.decoder import Decoder
from pipeline.engine.hf import HFEngine
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.job import batches
from pipeline.runtime.placement import run_stop_rule
from pipeline.store.schemas import label_schema
from pipeline.tasks.label import LabelUnit, alpha_n_table, feature_dim, summarize_labels
from speed.in_process import speed_arguments, speed_config


def main() -> None:
    parser = speed_arguments(__doc__, 200)
    parser.add_argument("--n-grid", default="1,2,3,5", help="comma-separated N values")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides on one core: a fair, less noisy comparison

    n_grid = [int(n) for n in args.n_grid.split(",")]
    config = speed_config(args, f"labels.n_grid={n_grid}", f"labels.n_tokens={n_grid[0]}")
    sweep = config.labels
    student_model, teacher_model = load_model(config.student), load_model(config.teacher)
    student = model_facts(config.student)
    sweep.check_against(config.decoding.max_new_tokens, student.num_layers)
    vocab = shared_vocab_size(student, model_facts(config.teacher))
    template, stop = load_template(config.prompt), run_stop_rule(config)
    examples = load_examples(config.dataset)
    schema = label_schema(feature_dim(sweep, student))

    def label(settings):
        decoder = Decoder(HFEngine(student_model, vocab), HFEngine(teacher_model, vocab), student_model.tokenizer, stop)
        start = time.perf_counter()
        rows = [row for bi, batch in batches(examples, config.decoding.batch_size)
                for row in LabelUnit(bi, batch, settings, "d", "s", "student", "teacher").run(decoder, template)]
        return pa.Table.from_pylist(rows, schema=schema), time.perf_counter() - start

    table, t_sweep = label(sweep)
    separate = {n: label(dataclasses.replace(sweep, n_tokens=n, n_grid=(n,))) for n in n_grid}
    t_separate = sum(t for _, t in separate.values())

    def tokens(t: pa.Table) -> tuple[int, int]:
        return sum(t.column("student_tokens_processed").to_pylist()), sum(t.column("teacher_tokens_processed").to_pylist())

    per_n = table.column("correct_per_n").to_pylist()
    mismatches = sum(row[ni] != single for ni, n in enumerate(n_grid)
                     for row, single in zip(per_n, separate[n][0].column("correct").to_pylist()))
    s_sweep, t_sweep_tok = tokens(table)
    s_sep = sum(tokens(t)[0] for t, _ in separate.values())
    t_sep = sum(tokens(t)[1] for t, _ in separate.values())
    summary = summarize_labels(table)
    leaves = sum(sum(r) for r in table.column("distinct_leaves_per_n").to_pylist()) / table.num_rows

    print(f"examples={table.num_rows} alphas={len(sweep.alpha_grid)} n_grid={n_grid} batch={config.decoding.batch_size}")
    print(alpha_n_table(summary))
    print(f"one run per N:   {t_separate:8.2f} s   tokens: student {s_sep}, teacher {t_sep}")
    print(f"one tree, all N: {t_sweep:8.2f} s   tokens: student {s_sweep}, teacher {t_sweep_tok}")
    print(f"leaves per example, summed over N: {leaves:.2f}   continuations decoded per example: "
          f"{summary['continuations_per_example']:.2f}")
    print(f"correctness mismatches tree vs per-N runs: {mismatches} of {table.num_rows * len(n_grid)} (example, N) rows")
    print(f"student_tokens_vs_per_n_runs={s_sweep / s_sep:.3f}")
    print(f"teacher_tokens_vs_per_n_runs={t_sweep_tok / t_sep:.3f}")
    print(f"n_grid_tokens_vs_per_n_runs={(s_sweep + t_sweep_tok) / (s_sep + t_sep):.3f}")
    print(f"n_grid_wall_vs_per_n_runs={t_sweep / t_separate:.3f}")


if __name__ == "__main__":
    main()
