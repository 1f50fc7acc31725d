"""Every Parquet schema the package writes, in one place: evaluation results, α-labels,
teaching-assistant signals and distillation data. docs/outputs.md documents each column."""
from __future__ import annotations

import pyarrow as pa

# A run over several benchmarks (a `datasets` list) writes its results hive-partitioned,
# results/benchmark=<dataset name>/part-*.parquet; readers (pyarrow, pandas, Ray Data) see the
# key as a column. It is no column of RESULT_SCHEMA on purpose: a partition key that is also a
# file column reads as one column in pyarrow.dataset but fails in pandas (string vs
# dictionary), so the rows' own copy of the name is `dataset`.
BENCHMARK_KEY = "benchmark"

# the result columns that say what a row cost the teacher: tokens it decided, tokens it read
# (prompt, steps and catch-ups), calls; summaries and reports give each per example
TEACHER_COSTS = ("teacher_tokens", "teacher_tokens_processed", "teacher_calls")

RESULT_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("group", pa.string()),  # the dataset's group_field value (e.g. the demo family), if any
        pa.field("strategy", pa.string(), nullable=False),  # unique label, e.g. fixed_alpha(alpha=1.0,n_tokens=5)
        pa.field("strategy_name", pa.string()),
        pa.field("params", pa.string()),  # the parameters it ran with, as JSON (an artifact's resolved)
        pa.field("alpha", pa.float64()),  # α the row actually used (0: teacher not asked)
        pa.field("n_tokens", pa.int64()),  # the steps of a first-N strategy (null for the others)
        pa.field("prompt_hash", pa.string()),
        pa.field("generated_text", pa.string()),
        pa.field("generated_token_ids", pa.list_(pa.int64())),
        pa.field("teacher_token_mask", pa.list_(pa.bool_())),  # per generated token: decided with the teacher
        pa.field("predicted_answer", pa.string()),
        pa.field("gold_answer", pa.string()),
        pa.field("correct", pa.bool_()),  # correct_strict where the text has a strict answer, else correct_flexible
        pa.field("correct_strict", pa.bool_()),  # its "The answer is X" answer is right
        pa.field("correct_flexible", pa.bool_()),  # its last answer-like text (number, yes/no, letter, boxed) is right
        pa.field("finish_reason", pa.string()),
        pa.field("generated_tokens", pa.int64()),
        pa.field("student_tokens_processed", pa.int64()),
        pa.field("teacher_tokens_processed", pa.int64()),
        pa.field("teacher_tokens", pa.int64()),
        pa.field("teacher_changed_tokens", pa.int64()),
        # teacher calls that computed for this row: its prefill (every row of a strategy that
        # prefills them all, e.g. a budget), each step or catch-up it answered; the teacher alone: 1
        pa.field("teacher_calls", pa.int64()),
        # each teacher-decided token of the student's loop: step, the student's uncertainty there
        # (as the strategy measures it), the α it was mixed with, and whether it changed the token
        pa.field("consultations", pa.list_(pa.struct([("step", pa.int64()), ("uncertainty", pa.float64()),
                                                      ("alpha", pa.float64()), ("changed", pa.bool_())]))),
        pa.field("student_first_entropy", pa.float64()),
        # CoT-decoding only (null otherwise): branches, the kept path's rank among the top-k
        # first tokens (0: the greedy one), its answer confidence (mean top-1 − top-2 gap)
        pa.field("cot_k", pa.int64()),
        pa.field("cot_branch", pa.int64()),
        pa.field("cot_confidence", pa.float64()),
        pa.field("worker_id", pa.string()),
        pa.field("node_id", pa.string()),
        pa.field("latency_s", pa.float64()),  # this row's share of its batch's wall time
    ]
)


def label_schema(feature_dim: int) -> pa.Schema:
    floats, ints = pa.list_(pa.float64()), pa.list_(pa.int64())
    return pa.schema(
        [
            pa.field("example_id", pa.string(), nullable=False),
            pa.field("dataset", pa.string()),
            pa.field("split", pa.string()),
            pa.field("group", pa.string()),
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
            # the N grid (labels.n_grid; n_tokens above is one of them): per N, in n_grid order,
            # the columns above for that N's leaves (one tree of depth max(N) gives them all)
            pa.field("n_grid", ints),
            pa.field("first_tokens_per_n", pa.list_(pa.list_(ints))),
            pa.field("answers_per_n", pa.list_(pa.list_(pa.string()))),
            pa.field("correct_per_n", pa.list_(pa.list_(pa.bool_()))),
            pa.field("interval_of_alpha_per_n", pa.list_(ints)),
            pa.field("interval_lo_per_n", pa.list_(floats)),
            pa.field("interval_hi_per_n", pa.list_(floats)),
            pa.field("interval_correct_per_n", pa.list_(pa.list_(pa.bool_()))),
            pa.field("distinct_leaves_per_n", ints),
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
            pa.field("student_topk_probs", floats),  # the TOPK largest first-token probabilities, largest first
            pa.field("teacher_topk_probs", floats),
            # position labels (labels.positions; null without): the student's greedy answer, its
            # entropy and top-1 − top-2 margin at every step, and at its M most uncertain steps
            # (in step order) per position α: the one mixed token there, the answer and whether it is right
            pa.field("greedy_token_ids", ints),
            pa.field("greedy_answer", pa.string()),
            pa.field("greedy_correct", pa.bool_()),
            pa.field("student_entropy_trace", floats),
            pa.field("student_margin_trace", floats),
            pa.field("position_alpha_grid", floats),
            pa.field("position_steps", ints),
            pa.field("position_tokens", pa.list_(ints)),
            pa.field("position_answers", pa.list_(pa.list_(pa.string()))),
            pa.field("position_correct", pa.list_(pa.list_(pa.bool_()))),
            # cost
            pa.field("distinct_leaves", pa.int64()),
            pa.field("distinct_continuations", pa.int64()),  # token sequences decoded, all N together
            pa.field("student_tokens_processed", pa.int64()),
            pa.field("teacher_tokens_processed", pa.int64()),
            pa.field("worker_id", pa.string()),
            pa.field("node_id", pa.string()),
            pa.field("latency_s", pa.float64()),
        ]
    )


SIGNAL_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("gold_answer", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("student_text", pa.string()),
        pa.field("student_answer", pa.string()),
        pa.field("student_correct", pa.bool_()),
        pa.field("teacher_text", pa.string()),
        pa.field("teacher_answer", pa.string()),
        pa.field("teacher_correct", pa.bool_()),
        pa.field("sc_k", pa.int64()),
        pa.field("sc_temperature", pa.float64()),
        pa.field("sc_answers", pa.list_(pa.string())),
        pa.field("sc_majority_answer", pa.string()),
        pa.field("sc_agreement", pa.float64()),  # share of the k samples agreeing with the majority
        pa.field("ta_student_mean_logprob", pa.float64()),
        pa.field("ta_student_min_logprob", pa.float64()),
        pa.field("ta_teacher_mean_logprob", pa.float64()),
        pa.field("ta_teacher_min_logprob", pa.float64()),
    ]
)


DISTILL_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("completion_token_ids", pa.list_(pa.int64())),
        pa.field("source", pa.string()),  # strategy that produced the target, e.g. teacher, switch
        pa.field("strategy", pa.string()),
        pa.field("origin_mask", pa.list_(pa.bool_())),  # per target token: produced with the teacher
        pa.field("teacher_token_share", pa.float64()),
        pa.field("correct", pa.bool_()),
        pa.field("sc_agreement", pa.float64()),
        pa.field("ta_teacher_mean_logprob", pa.float64()),
        pa.field("ta_student_mean_logprob", pa.float64()),
        pa.field("weight", pa.float64()),
    ]
)
