"""α-labels: the prefix tree equals decoding every α separately, with exact intervals."""
import json

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import LabelSettings

from pipeline.decoding.alpha_tree import envelope, label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.engine.stop import StopRule
from pipeline.decoding.distributions import mix
from pipeline.errors import UserError
from pipeline.config import ModelSpec
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.engine.hf import HFEngine
from pipeline.decoding.strategies import FixedAlpha, Student
from label_job import label_job

TEMPLATE = PromptTemplate(name="t", instruction="Solve.\n\n")
QUESTIONS = ["what is 2+2?", "a much longer question, 17*3?", "hi", "Tom has 3 apples and 4 pears."]


@pytest.fixture(scope="module")
def decoder(tiny_pair):
    s, t = ModelSpec(str(tiny_pair[0]), "float32"), ModelSpec(str(tiny_pair[1]), "float32")  # exact comparisons
    student, teacher = load_model(s), load_model(t)
    vocab = shared_vocab_size(model_facts(s), model_facts(t))
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 10)
    return Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)


def prompts(decoder):
    return [encode_prompt(decoder.tokenizer, TEMPLATE, q) for q in QUESTIONS]


@pytest.mark.parametrize("n_tokens", [1, 3])
def test_tree_labels_equal_fixed_alpha_for_every_grid_alpha(decoder, n_tokens):
    settings = LabelSettings(n_tokens=n_tokens)
    labels = label_batch(decoder, prompts(decoder), settings)
    for ai, alpha in enumerate(settings.alpha_grid):
        separate = generate(decoder, FixedAlpha(alpha, n_tokens), prompts(decoder))
        for lab, gen in zip(labels, separate):
            leaf = lab.leaves[lab.leaf_of_alpha[ai]]
            assert leaf.gen.token_ids == gen.token_ids, (alpha, n_tokens)
            assert leaf.gen.text == gen.text
            assert leaf.lo - 1e-9 <= alpha <= leaf.hi + 1e-9
    student = generate(decoder, Student(), prompts(decoder))
    zero = settings.alpha_grid.index(0.0)
    assert [lab.leaves[lab.leaf_of_alpha[zero]].gen.token_ids for lab in labels] == [g.token_ids for g in student]


def test_tree_shares_work(decoder):
    settings = LabelSettings(n_tokens=3)
    labels = label_batch(decoder, prompts(decoder), settings)
    for lab in labels:
        assert 1 <= len(lab.leaves) <= len(settings.alpha_grid)
        assert sorted(a for leaf in lab.leaves for a in leaf.alphas) == list(range(len(settings.alpha_grid)))
    # teacher: prompt + N-1 fed tokens per tree node at most; far below 17 separate runs
    separate = sum(
        g.teacher_tokens_processed for a in settings.alpha_grid for g in generate(decoder, FixedAlpha(a, 3), prompts(decoder))
    )
    assert sum(lab.teacher_tokens_processed for lab in labels) < separate / 4


def test_envelope_matches_dense_argmax():
    torch.manual_seed(0)
    for _ in range(20):
        p_s, p_t = torch.softmax(torch.randn(50) * 2, 0), torch.softmax(torch.randn(50) * 2, 0)
        segments = envelope(p_s, p_t - p_s, -1.0, 3.0)
        assert segments[0][1] == -1.0 and segments[-1][2] == 3.0
        assert all(a[2] == b[1] for a, b in zip(segments, segments[1:]))
        for token, start, end in segments:
            middle = torch.tensor([(start + end) / 2])
            assert int(mix(p_s.unsqueeze(0), p_t.unsqueeze(0), middle).argmax()) == token


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"alpha_grid": ()}, "empty"),
        ({"alpha_grid": (1.0, 0.5, 1.0)}, "duplicate"),
        ({"alpha_grid": (1.0, "x")}, "alpha_grid.1' must be a finite number, got 'x'"),
        ({"n_tokens": 0}, "n_tokens"),
        ({"feature_pool": "max"}, "feature_pool"),
    ],
)
def test_bad_label_settings(fields, message):
    with pytest.raises(UserError, match=message):
        LabelSettings(**fields)


def test_settings_checked_against_budget_and_student_depth():
    with pytest.raises(UserError, match="larger than decoding.max_new_tokens"):
        LabelSettings(n_tokens=5).check_against(max_new_tokens=4, num_layers=2)
    with pytest.raises(UserError, match="out of range"):
        LabelSettings(feature_layers=(5,)).check_against(max_new_tokens=8, num_layers=2)
    LabelSettings(feature_layers=(0, -1, 2)).check_against(max_new_tokens=8, num_layers=2)


@pytest.mark.ray  # runs a job on Ray
def test_label_job_writes_parquet_and_refuses_bad_layers(tiny_pair, tmp_path):
    run = label_job(tiny_pair, tmp_path, 5, {"n_tokens": 2, "alpha_grid": [1.0, 0.0, -1.0], "feature_layers": [-1, 0]})
    bad = run("--set", "labels.feature_layers=[7]")
    assert bad.returncode == 2 and "out of range" in bad.stderr and "Traceback" not in bad.stderr
    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    table = pq.read_table(tmp_path / "out" / "labels")
    assert table.num_rows == 5
    assert table.schema.field("features").type.list_size == 2 * 32  # two layers of the 32-wide student
    row = table.to_pylist()[0]
    assert row["alpha_grid"] == [1.0, 0.0, -1.0] and len(row["correct"]) == 3
    assert row["distinct_leaves"] == len(row["interval_lo"]) == len(set(row["interval_of_alpha"]))
    summary = json.loads((tmp_path / "out" / "label_summary.json").read_text())
    assert [r["alpha"] for r in summary["accuracy_per_alpha"]] == [1.0, 0.0, -1.0]
    assert json.loads((tmp_path / "out" / "labels_manifest.json").read_text())["status"] == "complete"
    # a private local cluster with token auth, and nothing written to the user's ~/.ray
    assert "started a local Ray cluster for this job" in done.stdout
    assert not (tmp_path / "home" / ".ray").exists() and "Token authentication" not in done.stderr
