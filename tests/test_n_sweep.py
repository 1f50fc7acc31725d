"""The N sweep: one prefix tree over the (α, N) grid gives what one label run per N gives,
with less work; the N grid is validated, summarised, reported, and trains a predictor per N."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import DatasetSpec, LabelSettings, ModelSpec
from pipeline.config.schema import settings_from
from pipeline.data.datasets import load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, load_template
from pipeline.decoding.alpha_tree import label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import FixedAlpha, Student
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.job import batches
from pipeline.store.schemas import label_schema
from pipeline.tasks.label import LabelUnit, feature_dim, format_label_summary, summarize_labels
from label_job import label_job

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = PromptTemplate(name="t", instruction="Solve.\n\n")
QUESTIONS = ["what is 2+2?", "a much longer question, 17*3?", "hi", "Tom has 3 apples and 4 pears.", "7*8=?"]
N_GRID = (1, 2, 3, 5)


class Models:
    """A loaded student/teacher pair; each `decoder()` has fresh engines, so its token counters
    hold one run's work."""

    def __init__(self, student_dir, teacher_dir, max_new_tokens, stop_strings):
        s, t = ModelSpec(str(student_dir), "float32"), ModelSpec(str(teacher_dir), "float32")  # exact comparisons
        self.student, self.teacher = load_model(s), load_model(t)
        self.facts = model_facts(s)
        self.vocab = shared_vocab_size(self.facts, model_facts(t))
        self.stop = StopRule(frozenset(self.facts.eos_ids), tuple(stop_strings), max_new_tokens)

    def decoder(self) -> Decoder:
        return Decoder(HFEngine(self.student, self.vocab), HFEngine(self.teacher, self.vocab),
                       self.student.tokenizer, self.stop)


@pytest.fixture(scope="module")
def tiny(tiny_pair):
    return Models(tiny_pair[0], tiny_pair[1], 10, ("\n\nQ:",))


def single_n(settings: LabelSettings, n: int) -> LabelSettings:
    return dataclasses.replace(settings, n_tokens=n, n_grid=(n,))


def test_n_grid_tree_equals_one_label_run_per_n_with_less_work(tiny):
    decoder = tiny.decoder()
    prompts = [encode_prompt(decoder.tokenizer, TEMPLATE, q) for q in QUESTIONS]
    settings = LabelSettings(n_grid=N_GRID, n_tokens=3)
    labels = label_batch(decoder, prompts, settings)
    swept = (decoder.student.tokens_processed, decoder.teacher.tokens_processed)
    separate = [0, 0]
    for ni, n in enumerate(N_GRID):
        alone = tiny.decoder()
        runs = label_batch(alone, prompts, single_n(settings, n))
        separate[0] += alone.student.tokens_processed
        separate[1] += alone.teacher.tokens_processed
        for lab, run in zip(labels, runs):
            part = lab.per_n[ni]
            assert part.n_tokens == n and len(part.leaves) == len(run.leaves)
            for ai in range(len(settings.alpha_grid)):
                mine, theirs = part.leaves[part.leaf_of_alpha[ai]], run.leaves[run.leaf_of_alpha[ai]]
                assert mine.gen.token_ids == theirs.gen.token_ids, (n, settings.alpha_grid[ai])
                assert mine.gen.text == theirs.gen.text
                assert (mine.lo, mine.hi) == (theirs.lo, theirs.hi)
                assert sorted(mine.alphas) == sorted(theirs.alphas)
    for lab in labels:  # the single-N fields are n_tokens' labels
        main = lab.per_n[N_GRID.index(3)]
        assert lab.leaves is main.leaves and lab.leaf_of_alpha == main.leaf_of_alpha
        assert lab.continuations <= sum(len(part.leaves) for part in lab.per_n)
    # a continuation shared between N (one tree) is decoded once: far less than 4 runs
    assert swept[0] < separate[0] / 2 and swept[1] < separate[1] / 2, (swept, separate)
    assert sum(lab.continuations for lab in labels) < sum(len(part.leaves) for lab in labels for part in lab.per_n)


def test_n_grid_leaves_equal_fixed_alpha_and_alpha_zero_is_one_student_run(tiny):
    decoder = tiny.decoder()
    prompts = [encode_prompt(decoder.tokenizer, TEMPLATE, q) for q in QUESTIONS]
    settings = LabelSettings(alpha_grid=(2.0, 1.0, 0.5, 0.0, -1.0), n_grid=(4, 1, 2))
    labels = label_batch(decoder, prompts, settings)
    for ni, n in enumerate(settings.n_grid):
        for ai, alpha in enumerate(settings.alpha_grid):
            fixed = generate(decoder, FixedAlpha(alpha, n), prompts)
            for lab, gen in zip(labels, fixed):
                part = lab.per_n[ni]
                assert part.leaves[part.leaf_of_alpha[ai]].gen.token_ids == gen.token_ids, (alpha, n)
    student = generate(decoder, Student(), prompts)
    zero = settings.alpha_grid.index(0.0)
    for lab, gen in zip(labels, student):
        gens = [part.leaves[part.leaf_of_alpha[zero]].gen for part in lab.per_n]
        assert gens[0].token_ids == gen.token_ids
        assert all(g is gens[0] for g in gens)  # the student's own path: one continuation for every N


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"n_grid": ()}, "n_grid' must not be empty"),
        ({"n_grid": "3"}, "n_grid' must be a list, got '3'"),
        ({"n_grid": (1, 2.5)}, "n_grid.1' must be an integer, got 2.5"),
        ({"n_grid": (0, 2)}, "n_grid.0' must be ≥ 1, got 0"),
        ({"n_grid": (1, True)}, "n_grid.1' must be an integer, got True"),
        ({"n_grid": (1, 2, 1)}, "duplicate values \\[1\\]"),
        ({"n_grid": (1, 2), "n_tokens": 3}, "must be one of labels.n_grid"),
        ({"n_tokens": 0}, "n_tokens"),
    ],
)
def test_bad_n_grid_is_one_user_error_line(fields, message):
    with pytest.raises(UserError, match=message) as err:
        LabelSettings(**fields)
    assert "\n" not in str(err.value)


def test_n_grid_resolves_with_n_tokens_and_is_checked_against_the_budget():
    assert (LabelSettings().n_tokens, LabelSettings().n_grid) == (3, (3,))
    assert LabelSettings(n_tokens=2).n_grid == (2,)
    from_yaml = settings_from(LabelSettings, {"n_grid": [5, 1, 2]}, "config: 'labels'")
    assert from_yaml.n_grid == (5, 1, 2) and from_yaml.n_tokens == 5
    assert settings_from(LabelSettings, {"n_grid": [1, 2], "n_tokens": 2}, "labels").n_tokens == 2
    with pytest.raises(UserError, match=r"largest N \(10\) is larger than decoding.max_new_tokens \(8\)"):
        LabelSettings(n_grid=(1, 10)).check_against(max_new_tokens=8, num_layers=2)
    LabelSettings(n_grid=(1, 8)).check_against(max_new_tokens=8, num_layers=2)


# --- the shipped demo world: the job's rows, through its scoring ------------------------------

@pytest.fixture(scope="module")
def demo_rows():
    """Label rows of 40 demo test problems: the N grid in one tree, and one run per N."""
    torch.set_num_threads(1)
    root = REPO / "demo_world"
    models = Models(root / "student", root / "teacher", 32, load_template("demo").stop_strings)
    examples = load_examples(DatasetSpec(source=str(root / "data" / "test.jsonl"), name="demo", split="test",
                                         group_field="family", limit=40))
    settings = LabelSettings(n_grid=N_GRID, n_tokens=1)
    schema = label_schema(feature_dim(settings, models.facts))

    def label(s: LabelSettings) -> pa.Table:
        decoder = models.decoder()
        rows = [row for bi, batch in batches(examples, 20)
                for row in LabelUnit(bi, batch, s, "demo", "test", "s", "t").run(decoder, load_template("demo"))]
        return pa.Table.from_pylist(rows, schema=schema)

    return label(settings), {n: label(single_n(settings, n)) for n in N_GRID}


def test_demo_n_grid_rows_equal_one_run_per_n(demo_rows):
    swept, separate = demo_rows
    rows = swept.to_pylist()
    assert all(r["n_grid"] == list(N_GRID) and r["n_tokens"] == 1 for r in rows)
    for ni, n in enumerate(N_GRID):
        for mine, theirs in zip(rows, separate[n].to_pylist()):
            assert mine["correct_per_n"][ni] == theirs["correct"]
            assert mine["answers_per_n"][ni] == theirs["answers"]
            assert mine["first_tokens_per_n"][ni] == theirs["first_tokens"]
            assert mine["interval_lo_per_n"][ni] == theirs["interval_lo"]
            assert mine["interval_hi_per_n"][ni] == theirs["interval_hi"]
            assert mine["interval_correct_per_n"][ni] == theirs["interval_correct"]
            assert mine["distinct_leaves_per_n"][ni] == theirs["distinct_leaves"]
    for mine, theirs in zip(rows, separate[1].to_pylist()):  # single-N columns: labels.n_tokens = 1
        assert {k: mine[k] for k in ("correct", "answers", "interval_lo", "distinct_leaves")} == \
               {k: theirs[k] for k in ("correct", "answers", "interval_lo", "distinct_leaves")}
    work = lambda t: sum(t.column("student_tokens_processed").to_pylist()) + sum(t.column("teacher_tokens_processed").to_pylist())  # noqa: E731
    assert work(swept) < sum(work(t) for t in separate.values()) / 2
    correct = np.array(swept.column("correct").to_pylist())
    assert 0 < correct.mean() < 1 and correct.any(axis=1).mean() > correct.mean(axis=0).max()  # a real mix of outcomes


def test_label_summary_gives_accuracy_per_alpha_and_n(demo_rows):
    swept, _ = demo_rows
    summary = summarize_labels(swept)
    per_n = np.array(swept.column("correct_per_n").to_pylist())  # [examples, N, α]
    grid = swept.column("alpha_grid")[0].as_py()
    assert summary["n_grid"] == list(N_GRID) and summary["n_tokens"] == 1
    cells = {(r["alpha"], r["n_tokens"]): r["accuracy"] for r in summary["accuracy_per_alpha_n"]}
    assert len(cells) == len(grid) * len(N_GRID)
    for ni, n in enumerate(N_GRID):
        for ai, a in enumerate(grid):
            assert cells[a, n] == pytest.approx(per_n[:, ni, ai].mean())
    assert [r["accuracy"] for r in summary["oracle_accuracy_per_n"]] == pytest.approx(per_n.any(axis=2).mean(axis=0).tolist())
    assert [r["accuracy"] for r in summary["accuracy_per_alpha"]] == pytest.approx(per_n[:, 0].mean(axis=0).tolist())
    text = format_label_summary(summary)
    assert "N=1" in text and "N=5" in text and "oracle" in text
    assert len([line for line in text.splitlines() if line.strip().startswith(("3.00", "-1.00"))]) == 2


def test_report_draws_one_accuracy_line_per_n(demo_rows, tmp_path):
    from pipeline.report import tables
    from pipeline.report.page import build_sections
    from pipeline.report.runs import load_run

    swept, _ = demo_rows
    (tmp_path / "run" / "labels").mkdir(parents=True)
    pq.write_table(swept, tmp_path / "run" / "labels" / "part-b000000.parquet")
    run = load_run(str(tmp_path / "run"))
    acc = tables.accuracy_vs_alpha([run])
    assert sorted(set(acc["n_tokens"])) == list(N_GRID)
    per_n = np.array(swept.column("correct_per_n").to_pylist())
    grid = swept.column("alpha_grid")[0].as_py()
    for ni, n in enumerate(N_GRID):
        line = acc[acc["n_tokens"] == n].set_index("alpha")["accuracy"]
        assert [line[a] for a in grid] == pytest.approx(per_n[:, ni].mean(axis=0).tolist())
    by_group = tables.accuracy_vs_alpha_by_group([run])
    assert sorted(set(by_group["n_tokens"])) == list(N_GRID)
    section = {s.key: s for s in build_sections([run])}["accuracy_vs_alpha"]
    assert section.png is not None and section.missing is None
    # the tables that compare against α = 0 stay on the single-N columns
    assert set(tables.label_outcomes(run.labels)["n_tokens"]) == {1}


# --- the predictor for a chosen N --------------------------------------------------------------

GRID = [1.0, 0.0]


def n_grid_labels(n=160, dim=6, seed=0):
    """Labels over N = 1, 2: at N = 2 the sign of feature 0 decides whether α = 1 or α = 0 is
    right; at N = 1 (the single-N columns) α = 0 is always right and α = 1 never."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    helps = feats[:, 0] > 0
    at_2 = [[bool(h), not bool(h)] for h in helps]
    at_1 = [[False, True]] * n
    return pa.table({
        "example_id": [f"d/train/{i:06d}" for i in range(n)], "student": ["s@x"] * n, "n_tokens": [1] * n,
        "alpha_grid": [GRID] * n, "correct": at_1, "n_grid": [[1, 2]] * n,
        "correct_per_n": [[a, b] for a, b in zip(at_1, at_2)],
        "features": pa.array(feats.tolist(), type=pa.list_(pa.float32(), dim)),
        "feature_layers": [[-1]] * n, "feature_pool": ["concat"] * n,
        "student_entropy": rng.uniform(size=n), "student_top1_prob": rng.uniform(size=n),
    })


def test_predictor_trains_on_the_chosen_n(tmp_path):
    from jobs.train_predictor import main as train_main
    from predictor.artifact import Predictor
    from pipeline.decoding.strategies import build_strategy
    from predictor.online import load_online
    from predictor.training import TrainSettings, read_labels, train_predictor

    path = tmp_path / "labels.parquet"
    pq.write_table(n_grid_labels(), path)
    at_2 = read_labels([str(path)], n_tokens=2)
    assert set(at_2.column("n_tokens").to_pylist()) == {2} and "correct_per_n" not in at_2.column_names
    helps = np.array(at_2.column("features").to_pylist())[:, 0] > 0
    assert [c[0] for c in at_2.column("correct").to_pylist()] == helps.tolist()
    m2 = train_predictor(at_2, TrainSettings(folds=4), [str(path)]).meta["metrics"]
    assert m2["predicted_alpha_acc"] > 0.9 and m2["student_acc"] == pytest.approx(1 - helps.mean())
    m1 = train_predictor(read_labels([str(path)]), TrainSettings(folds=4), [str(path)]).meta
    assert m1["n_tokens"] == 1 and m1["metrics"]["student_acc"] == 1.0  # default: the single-N columns
    with pytest.raises(UserError, match="no labels for N = 3"):
        read_labels([str(path)], n_tokens=3)

    out = tmp_path / "art"
    assert train_main(["--labels", str(path), "--out", str(out), "--n-tokens", "2", "--folds", "3"]) == 0
    artifact = Predictor.load(out)
    assert artifact.n_tokens == 2 and artifact.meta["label_fingerprint"] != m1["label_fingerprint"]
    assert build_strategy("predicted_alpha", {"artifact": str(out)}, load_online).plan.steps == 2  # decodes with its N
    with pytest.raises(UserError, match="n_tokens must be ≥ 1, got 0"):
        TrainSettings(n_tokens=0)


def test_older_single_n_labels_train_only_for_their_n(tmp_path):
    from predictor.training import read_labels

    table = n_grid_labels(n=20).drop_columns(["n_grid", "correct_per_n"])
    pq.write_table(table, tmp_path / "old.parquet")
    assert read_labels([str(tmp_path / "old.parquet")], n_tokens=1).num_rows == 20
    with pytest.raises(UserError, match=r"holds labels for N = \[1\] only"):
        read_labels([str(tmp_path / "old.parquet")], n_tokens=2)


# --- the job, through Ray ----------------------------------------------------------------------

@pytest.mark.ray  # runs a job on Ray
def test_label_job_over_an_n_grid(tiny_pair, tmp_path):
    run = label_job(tiny_pair, tmp_path, 4, {"n_grid": [1, 3], "alpha_grid": [1.0, 0.0, -1.0]})
    for bad, message in (("[1, 1]", "duplicate values"), ("[1, 7]", "larger than decoding.max_new_tokens")):
        refused = run("--set", f"labels.n_grid={bad}")
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "N=1" in done.stdout and "N=3" in done.stdout
    rows = pq.read_table(tmp_path / "out" / "labels").to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert row["n_grid"] == [1, 3] and row["n_tokens"] == 1 and row["correct"] == row["correct_per_n"][0]
        assert [len(c) for c in row["correct_per_n"]] == [3, 3]
        assert row["distinct_continuations"] <= sum(row["distinct_leaves_per_n"])
    summary = json.loads((tmp_path / "out" / "label_summary.json").read_text())
    assert summary["n_grid"] == [1, 3] and len(summary["accuracy_per_alpha_n"]) == 6
