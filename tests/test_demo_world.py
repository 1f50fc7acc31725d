"""The built-in demo world: generator, beliefs, tokenizer, reproducible build, and the
phenomenon on the shipped checkpoints (the best α differs by family, and the shipped
α-predictor and calibrated gate find it)."""
from __future__ import annotations

import collections
import functools
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.prompts import encode_prompt, load_template
from pipeline.decoding.shared_batch import generate
from pipeline.demo.families import FAMILIES, FAMILY_BY_NAME, OPS, correct_interval, wrong_ops
from pipeline.demo.problems import (
    EVENTS, believed_steps, cot_text, final_answer, generate_problems, parse_steps, read_jsonl, split_problems,
)
from pipeline.demo.world import demo_paths, file_hashes, recorded_build

REPO = Path(__file__).resolve().parents[1]

_EQ = re.compile(r"^(Add|Subtract|Multiply): (\d+)([-+*])(\d+)=(\d+)$")
_APPLY = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def test_generator_is_deterministic_and_holds_every_family_in_its_share():
    rows = generate_problems(500, seed=3)
    assert rows == generate_problems(500, seed=3) and rows != generate_problems(500, seed=4)
    counts = collections.Counter(r["family"] for r in rows)
    assert counts == {f.name: round(f.share * 500) for f in FAMILIES}


def test_format_arithmetic_and_the_verb_names_the_operation():
    for row in generate_problems(400, seed=1):
        assert set(row) == {"question", "answer", "family"}
        family = FAMILY_BY_NAME[row["family"]]
        assert row["question"].startswith(family.place + ", ")
        body, tail = row["answer"].rsplit("\n#### ", 1)
        lines = body.split("\n")
        assert len(lines) == family.steps
        value = None
        for line, (op, k) in zip(lines, parse_steps(row)[1]):
            name, a, sym, b, r = _EQ.match(line).groups()
            assert name == op and int(b) == k and (value is None or int(a) == value)
            assert _APPLY[sym](int(a), int(b)) == int(r) > 0
            assert any(e.format(k=k, what="")[:8] in row["question"] for e in EVENTS[op])  # the verb asks for it
            value = int(r)
        assert value == final_answer(row) == int(tail)
        cot = cot_text(row)
        assert cot.split(":")[0] in OPS and cot.endswith(f"The answer is {value}.")


def test_train_test_disjoint_and_in_share():
    train, test = split_problems(2000, 300, seed=0)
    assert len(train) == 2000 and len(test) == 300
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert collections.Counter(r["family"] for r in train) == {f.name: round(f.share * 2000) for f in FAMILIES}
    assert split_problems(2000, 300, seed=0) == (train, test)


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_each_corpus_draws_operations_in_its_beliefs(role):
    """The mechanism: a model's corpus opens each family's problems with the right
    operation, W1 and W2 in the model's proportions, and computes whatever it chose."""
    rng = random.Random(7)
    rows = {f.name: next(r for r in generate_problems(50, seed=2) if r["family"] == f.name) for f in FAMILIES}
    for name, row in rows.items():
        family, right = FAMILY_BY_NAME[name], parse_steps(row)[1][0][0]
        order = (right, *wrong_ops(right))
        draws = [believed_steps(row, role, rng)[0] for _ in range(4000)]
        share = np.array([sum(d.startswith(op + ":") for d in draws) for op in order]) / len(draws)
        assert share == pytest.approx(getattr(family, role), abs=0.03)
        for d in draws[:50]:
            for eq in re.findall(r"\d+[-+*]\d+=\d+", d):
                a, sym, b, r = re.match(r"(\d+)([-+*])(\d+)=(\d+)", eq).groups()
                assert _APPLY[sym](int(a), int(b)) == int(r)


def test_correct_interval_is_where_the_mixed_argmax_is_right():
    rng = np.random.default_rng(0)
    alphas = np.linspace(-3, 5, 2001)
    for _ in range(200):
        s, t = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))
        lo, hi = correct_interval(tuple(s), tuple(t))
        right = (s[None] + alphas[:, None] * (t - s)[None]).argmax(axis=1) == 0
        inside = (alphas > lo) & (alphas < hi)
        near = np.minimum(np.abs(alphas - lo), np.abs(alphas - hi)) < 1e-2
        assert (right == inside)[~near].all()


def test_correct_interval_agrees_with_the_label_jobs_envelope():
    """The families' intervals (pipeline/demo) and the label job's exact α intervals
    (pipeline/decoding/alpha_tree.envelope) are two derivations of one thing."""
    from pipeline.decoding.alpha_tree import envelope

    for f in FAMILIES:
        s, t = torch.tensor(f.student), torch.tensor(f.teacher)
        right = [(lo, hi) for token, lo, hi in envelope(s, t - s, -10.0, 10.0) if token == 0]
        lo, hi = correct_interval(f.student, f.teacher)
        assert len(right) == 1
        assert right[0][0] == pytest.approx(max(lo, -10.0), abs=1e-6) and right[0][1] == pytest.approx(min(hi, 10.0), abs=1e-6)


def test_the_training_loss_sees_the_belief_at_each_operation_token():
    """Corpus examples carry the belief at exactly the operation tokens, and the loss there is
    the cross-entropy against it (elsewhere the next-token loss on the drawn text)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.demo.training import Corpus, _collate, _loss

    _, tok = _small_tokenizer()
    rows = [r for r in generate_problems(50, seed=2) if r["family"] in ("mix", "teacher_only")][:4]
    corpus = Corpus(rows, tok, load_template("demo"), "student")
    examples = [corpus.example(i, random.Random(i)) for i in range(len(rows))]
    op_ids = set(corpus.op_tokens.values())
    for row, ex in zip(rows, examples):
        family = FAMILY_BY_NAME[row["family"]]
        assert len(ex.beliefs) == family.steps and all(ex.ids[p] in op_ids for p in ex.beliefs)
        first = ex.beliefs[min(ex.beliefs)]
        right = corpus.op_tokens[parse_steps(row)[1][0][0]]
        assert first[right] == pytest.approx(family.student[0])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, bos_token_id=None))
    batch = _collate(examples, tok.pad_token_id, len(tok))
    ids, labels, mask, soft_rows, soft = batch
    with torch.no_grad():
        loss = _loss(model, *batch)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    terms = []
    for i, ex in enumerate(examples):
        for pos in range(1, len(ex.ids)):
            if ex.labels[pos] == -100:
                continue
            belief = ex.beliefs.get(pos)
            terms.append(-sum(p * logp[i, pos - 1, t] for t, p in belief.items()) if belief else -logp[i, pos - 1, ex.ids[pos]])
    assert float(loss) == pytest.approx(float(torch.stack([torch.as_tensor(t) for t in terms]).mean()), rel=1e-5)


def test_family_intervals_are_the_documented_regimes():
    iv = {f.name: f.interval() for f in FAMILIES}
    assert 0.1 < iv["follow"][0] < 0.25 and iv["follow"][1] == math.inf
    assert iv["ignore"][0] == -math.inf and 0.25 < iv["ignore"][1] < 0.5
    assert 1.0 < iv["overtrust"][0] < 1.5 and iv["overtrust"][1] == math.inf
    assert 0.0 < iv["mix"][0] < 0.5 < iv["mix"][1] < 1.0
    assert iv["teacher_only"] is None
    grid = np.linspace(-1, 3, 17)
    for f in FAMILIES:  # the ranges the tests check lie inside / outside the interval
        lo, hi = f.interval() or (0.0, 0.0)
        assert ((grid > lo) & (grid < hi))[f.right_at(grid)].all() and not ((grid > lo) & (grid < hi))[f.wrong_at(grid)].any()


@functools.cache
def _small_tokenizer():
    from pipeline.demo.tokenizer import train_tokenizer

    template = load_template("demo")
    texts = [template.render(r["question"]) + " " + cot_text(r) for r in generate_problems(400, seed=2)]
    return texts, train_tokenizer(texts)


def test_tokenizer_round_trip_single_digits_and_one_token_per_operation():
    texts, tok = _small_tokenizer()
    for text in texts + ["Q: 1234567890 + -7 = $3,000.50?\n\nA: x"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    for token in tok.get_vocab():
        assert sum(ch.isdigit() for ch in token) <= 1, token
    assert tok.eos_token_id is not None and tok.pad_token_id is not None and tok.eos_token_id != tok.pad_token_id
    ids = [tok.encode(" " + op, add_special_tokens=False) for op in OPS]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 3


@pytest.mark.slow  # rebuilds a world
def test_build_is_reproducible_and_check_finds_a_changed_file(tmp_path):
    """A small world built twice gives identical files; --check rebuilds and compares."""
    from pipeline.demo.training import ModelSpec
    from pipeline.demo.world import build_demo_world, check_demo_world

    tiny = {"n_train": 300, "n_test": 40, "log": lambda *_: None,
            "teacher_spec": ModelSpec(32, 1, 2, 64, steps=6, batch_size=8, warmup_steps=2),
            "student_spec": ModelSpec(16, 1, 2, 32, steps=6, batch_size=8, warmup_steps=2)}
    a, b = build_demo_world(tmp_path / "a", 5, **tiny), build_demo_world(tmp_path / "b", 5, **tiny)
    hashes = file_hashes(a.root)
    assert hashes == file_hashes(b.root) and "student/model.safetensors" in hashes
    assert recorded_build(a.root)["files"] == hashes
    assert check_demo_world(a.root, log=lambda *_: None) == []
    edited = a.root / "data" / "test.jsonl"
    edited.write_text(edited.read_text() + "\n")  # a shipped file edited by hand: world.json no longer matches it
    recorded = recorded_build(a.root)
    recorded["files"] = file_hashes(a.root)  # ...even when its hashes were recomputed: the rebuild tells
    (a.root / "world.json").write_text(json.dumps(recorded))
    assert check_demo_world(a.root, log=lambda *_: None) == ["data/test.jsonl"]


# --- the shipped world -------------------------------------------------------------------------

def _shipped():
    paths = demo_paths()
    assert (paths.student / "model.safetensors").is_file(), "the demo world ships in demo_world/ (python -m jobs.build_demo)"
    return paths


def test_shipped_files_match_the_recorded_hashes():
    paths = _shipped()
    assert recorded_build(paths.root)["files"] == file_hashes(paths.root)


def test_shipped_checkpoints_load_and_share_vocabulary():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = _shipped()
    toks = [AutoTokenizer.from_pretrained(str(p)) for p in (paths.student, paths.teacher, paths.tokenizer)]
    assert toks[0].get_vocab() == toks[1].get_vocab() == toks[2].get_vocab()
    sizes = {}
    for name in ("student", "teacher"):
        model = AutoModelForCausalLM.from_pretrained(str(getattr(paths, name)))
        assert model.config.vocab_size == len(toks[0])
        sizes[name] = sum(p.numel() for p in model.parameters())
    assert sizes["teacher"] > 2 * sizes["student"]


# Per family of the shipped test split, by greedy decoding: accuracy bounds of the student
# and the teacher alone (docs/demo-world.md's table; the beliefs imply 0/1 per family).
ALONE_BOUNDS = {
    "follow": {"student": (0.0, 0.1), "teacher": (0.9, 1.0)},
    "ignore": {"student": (0.9, 1.0), "teacher": (0.0, 0.1)},
    "overtrust": {"student": (0.0, 0.1), "teacher": (0.0, 0.1)},
    "mix": {"student": (0.0, 0.1), "teacher": (0.0, 0.1)},
    "teacher_only": {"student": (0.0, 0.1), "teacher": (0.9, 1.0)},
}


@pytest.fixture(scope="module")
def shipped_labels():
    """α-labels (default grid, N = 1) of the first 60 test problems of each family, in
    process, plus the student's and the teacher's own greedy answers."""
    from pipeline.config import LabelSettings, ModelSpec
    from pipeline.data.answer_types import score
    from pipeline.data.example import Example
    from pipeline.decoding.alpha_tree import label_batch
    from pipeline.decoding.decoder import Decoder
    from pipeline.decoding.strategies import Student, Teacher
    from pipeline.engine.hf import HFEngine
    from pipeline.engine.stop import StopRule
    from pipeline.models.facts import model_facts, shared_vocab_size
    from pipeline.models.loading import load_model

    torch.set_num_threads(1)
    paths = _shipped()
    s, t = ModelSpec(str(paths.student), "float32"), ModelSpec(str(paths.teacher), "float32")  # as configs/demo.yaml
    student, teacher = load_model(s), load_model(t)
    vocab = shared_vocab_size(model_facts(s), model_facts(t))
    template = load_template("demo")
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
                      StopRule(frozenset(model_facts(student.spec).eos_ids), tuple(template.stop_strings), 32))
    rows = [r for f in FAMILIES for r in [r for r in read_jsonl(paths.test) if r["family"] == f.name][:60]]
    prompts = [encode_prompt(student.tokenizer, template, r["question"]) for r in rows]
    gold = [str(final_answer(r)) for r in rows]
    settings = LabelSettings(n_tokens=1)
    labels = []
    for i in range(0, len(rows), 50):
        labels += label_batch(decoder, prompts[i:i + 50], settings)
    alone = {}
    for name, strategy in (("student", Student()), ("teacher", Teacher())):
        gens = generate(decoder, strategy, prompts)
        alone[name] = np.array([score(g.text, Example("", 0, "", y)).correct for g, y in zip(gens, gold)])
    correct = np.array([[score(lab.leaves[i].gen.text, Example("", 0, "", y)).correct for i in lab.leaf_of_alpha]
                        for lab, y in zip(labels, gold)])
    return {"rows": rows, "labels": labels, "correct": correct, "grid": list(settings.alpha_grid), "alone": alone,
            "family": np.array([r["family"] for r in rows])}


def test_the_label_job_recovers_each_familys_best_alpha_interval(shipped_labels):
    """Each family's labels are right inside its interval and wrong outside it, at the grid
    α docs/demo-world.md names for it (those near an interval end are left out: the learnt
    beliefs are near the corpus proportions, not exactly on them)."""
    grid, correct, family = np.array(shipped_labels["grid"]), shipped_labels["correct"], shipped_labels["family"]
    for f in FAMILIES:
        rows = correct[family == f.name]
        assert len(rows) >= 50
        right, wrong = f.right_at(grid), f.wrong_at(grid)
        assert wrong.any() and (right.any() or f.interval() is None)
        recovered = rows[:, right].all(axis=1) & ~rows[:, wrong].any(axis=1)
        assert recovered.mean() >= 0.9, (f.name, recovered.mean())


def test_the_student_and_the_teacher_alone_per_family(shipped_labels):
    family = shipped_labels["family"]
    for name, bounds in ALONE_BOUNDS.items():
        for model, (lo, hi) in bounds.items():
            acc = shipped_labels["alone"][model][family == name].mean()
            assert lo <= acc <= hi, (name, model, acc)


def test_the_shipped_predictors_beat_every_fixed_alpha_and_the_gate_beats_the_student(shipped_labels):
    """On held-out test problems (the artifacts were trained on train-split labels): the α
    each artifact predicts from the label rows' own features, scored off the exact labels."""
    from pipeline.config import ModelSpec
    from pipeline.models.facts import model_facts
    from predictor.artifact import Predictor
    from predictor.features import assemble

    labels, correct, grid = shipped_labels["labels"], shipped_labels["correct"], shipped_labels["grid"]
    zero = grid.index(0.0)
    best_fixed, oracle = correct.mean(axis=0).max(), correct.any(axis=1).mean()
    hidden = np.array([lab.features for lab in labels], dtype=np.float32)
    entropy = np.array([lab.first_token["student_entropy"] for lab in labels])
    student_id = model_facts(ModelSpec(str(_shipped().student))).identity
    for artifact in ("artifacts/alpha-demo-v2", "artifacts/alpha-demo-mlp-v2"):
        predictor = Predictor.load(REPO / artifact)
        spec = predictor.feature_spec
        assert spec.student == student_id, f"{artifact} was trained for another student: retrain it"
        stats = {k: [lab.first_token[k] for lab in labels] for k in spec.stats}
        chosen = predictor.predict_alpha(assemble(hidden, stats, spec))
        accuracy = correct[np.arange(len(correct)), [grid.index(float(a)) for a in chosen]].mean()
        assert accuracy >= best_fixed + 0.1 and accuracy >= oracle - 0.02, (artifact, accuracy, best_fixed, oracle)
        gate = predictor.meta["entropy_gate"]
        inside = (entropy >= gate["lo"]) & (entropy <= gate["hi"])
        gated = np.where(inside, correct[:, grid.index(gate["alpha"])], correct[:, zero]).mean()
        assert gated >= correct[:, zero].mean() + 0.1 and inside.mean() <= 0.7, (gate, gated, inside.mean())
