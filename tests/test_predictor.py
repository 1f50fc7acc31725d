"""α-predictor: training, held-out metrics, artifact round trip, online use."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_bad_inputs import read_only_dir  # noqa: F401 - the fixture: a directory nothing may be written into

from pipeline.config import LabelSettings

from pipeline.decoding.alpha_tree import label_batch
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.config import ModelSpec
from pipeline.models.facts import model_facts, model_identity, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.engine.hf import HFEngine
from pipeline.decoding.strategies import FixedAlpha
from pipeline.decoding.strategies import build_strategy
from predictor.online import load_online
from predictor.artifact import Predictor
from predictor.decision import Policy, best_fixed_index, calibrate_entropy_gate, decoding_metrics, heldout_outcomes, teacher_tokens
from predictor.training import TrainSettings, read_labels, train_predictor

GRID = [1.0, 0.5, 0.0]


def synthetic_labels(n=200, dim=6, seed=0, student="s@x", first_id=0):
    """Examples whose sign of feature 0 decides whether α=1 or α=0 is right; α=0.5 always wrong."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    helps = feats[:, 0] > 0
    correct = [[bool(h), False, bool(not h)] for h in helps]
    entropy = np.where(helps, 2.0, 0.5) + rng.normal(scale=0.1, size=n)
    return pa.table({
        "example_id": [f"d/train/{i:06d}" for i in range(first_id, first_id + n)],
        "student": [student] * n,
        "n_tokens": [2] * n,
        "alpha_grid": [GRID] * n,
        "correct": correct,
        "features": pa.array(feats.tolist(), type=pa.list_(pa.float32(), dim)),
        "feature_layers": [[-1]] * n,
        "feature_pool": ["concat"] * n,
        "student_entropy": entropy,
        "student_top1_prob": rng.uniform(size=n),
    })


@pytest.mark.parametrize("model", ["sklearn_logreg", "torch_mlp"])
def test_predictor_learns_which_alpha_helps(model, tmp_path):
    table = synthetic_labels()
    predictor = train_predictor(table, TrainSettings(model=model, folds=4), ["synthetic"])
    m = predictor.meta["metrics"]
    helps = np.array(table.column("features").to_pylist())[:, 0] > 0
    assert m["student_acc"] == pytest.approx(1 - helps.mean()) and m["teacher_acc"] == pytest.approx(helps.mean())
    assert m["oracle_acc"] == 1.0
    assert m["predicted_alpha_acc"] > 0.9 > max(m["student_acc"], m["teacher_acc"], m["best_fixed_alpha_acc"])
    assert 0.3 < m["no_teacher_share"] < 0.7
    gate = predictor.meta["entropy_gate"]
    assert gate["alpha"] == 1.0 and gate["lo"] > 0.6 and gate["accuracy"] > 0.95

    saved = predictor.save(tmp_path / "art")
    loaded = Predictor.load(saved)
    x = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    assert np.allclose(loaded.predict_proba(x), predictor.predict_proba(x))
    assert json.loads((saved / "metadata.json").read_text())["feature_spec"]["dim"] == 8
    heldout = pd.read_parquet(saved / "heldout.parquet")  # the rows behind the metrics
    assert sorted(heldout["example_id"]) == sorted(table.column("example_id").to_pylist())
    assert heldout["predicted_correct"].mean() == pytest.approx(m["predicted_alpha_acc"])
    assert (heldout["chosen_alpha"] == 0).mean() == pytest.approx(m["no_teacher_share"])
    with pytest.raises(UserError, match="already exists"):
        predictor.save(saved)


def test_retraining_from_an_artifact_checks_features(tmp_path):
    first = train_predictor(synthetic_labels(), TrainSettings(model="torch_mlp", folds=2), ["a"])
    again = train_predictor(synthetic_labels(seed=1, first_id=200), TrainSettings(model="torch_mlp", folds=2), ["b"], init=first)
    assert again.meta["init_from"]["label_fingerprint"] == first.meta["label_fingerprint"]
    assert again.meta["label_fingerprint"] != first.meta["label_fingerprint"]
    with pytest.raises(UserError, match="other features"):
        train_predictor(synthetic_labels(student="other@y", first_id=400), TrainSettings(folds=2), ["c"], init=first)


def test_decision_moves_off_the_default_only_past_the_threshold():
    tokens = teacher_tokens(GRID, 2)
    assert tokens.tolist() == [2, 2, 0]
    proba = np.array([[0.9, 0.1, 0.2], [0.3, 0.1, 0.3], [0.1, 0.8, 0.5], [0.52, 0.1, 0.5]])
    assert Policy(2, 0.0, tuple(tokens)).choose(proba).tolist() == [0, 2, 1, 0]  # a tie keeps the default
    assert Policy(2, 0.05, tuple(tokens)).choose(proba).tolist() == [0, 2, 1, 2]  # +0.02 does not pass 0.05
    assert Policy(0, 0.0, tuple(tokens)).choose(proba).tolist() == [0, 0, 1, 0]  # relative to α=1, not to α=0
    assert Policy(0, None, tuple(tokens)).choose(proba).tolist() == [0, 0, 0, 0]
    # a price per teacher token: α=1's +0.02 over α=0 is not worth 2 tokens at 0.02 each
    assert Policy(2, 0.0, tuple(tokens), teacher_token_cost=0.02).choose(proba).tolist() == [0, 2, 1, 2]
    correct = np.array([[True, False, False], [False, False, True], [False, True, False], [True, False, True]])
    chosen = Policy(2, 0.0, tuple(tokens)).choose(proba)
    m = decoding_metrics(heldout_outcomes(correct, chosen, 2, GRID, tokens, 0.0))
    assert m["predicted_alpha_acc"] == 1.0 and m["student_acc"] == pytest.approx(0.5)
    assert m["no_teacher_share"] == pytest.approx(0.25) and m["oracle_acc"] == 1.0
    lo, hi = m["intervals"]["student_acc"]["lo"], m["intervals"]["student_acc"]["hi"]
    assert lo < 0.5 < hi and m["differences"]["predicted_vs_student"]["value"] == pytest.approx(0.5)


def test_best_fixed_alpha_ties_go_to_fewer_teacher_tokens():
    tokens = teacher_tokens(GRID, 3)
    tie = np.array([[True, False, False], [False, False, True]])  # α=1 and α=0 both 1 of 2
    assert best_fixed_index(tie, tokens) == 2
    better = np.array([[True, False, False], [True, False, True]])
    assert best_fixed_index(better, tokens) == 0
    assert best_fixed_index(better, tokens, cost=0.2) == 2  # half a point is not worth 3 tokens at 0.2


def test_entropy_gate_calibration_finds_the_band():
    entropy = np.array([0.1, 0.2, 1.5, 1.6, 3.0])
    correct = np.array([[False, False, True], [False, False, True], [True, False, False], [True, False, False], [False, False, True]])
    gate = calibrate_entropy_gate(entropy, correct, GRID)
    assert gate["alpha"] == 1.0 and gate["lo"] <= 1.5 and 1.6 <= gate["hi"] < 3.0 and gate["accuracy"] == 1.0


def test_read_labels_refuses_mixed_grids(tmp_path):
    import pyarrow.parquet as pq

    a, b = synthetic_labels(n=10), synthetic_labels(n=10)
    b = b.set_column(b.schema.get_field_index("alpha_grid"), "alpha_grid", pa.array([[2.0, 0.0, -1.0]] * 10))
    b = b.set_column(0, "example_id", pa.array([f"other/{i}" for i in range(10)]))
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    with pytest.raises(UserError, match="different α grids"):
        read_labels([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])


def test_predicted_alpha_online_uses_label_features(tiny_pair, tmp_path):
    """Online features equal the label job's; the strategy decodes each row with its predicted α."""
    s_spec, t_spec = ModelSpec(str(tiny_pair[0])), ModelSpec(str(tiny_pair[1]))
    student, teacher = load_model(s_spec), load_model(t_spec)
    vocab = shared_vocab_size(model_facts(s_spec), model_facts(t_spec))
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
                      StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 8))
    template = PromptTemplate(name="t", instruction="Solve.\n\n")
    prompts = [encode_prompt(student.tokenizer, template, f"what is {i}+{i}?") for i in range(12)]
    settings = LabelSettings(alpha_grid=tuple(GRID), n_tokens=2)
    labels = label_batch(decoder, prompts, settings)
    rng = np.random.default_rng(0)
    table = pa.table({
        "example_id": [f"t/{i}" for i in range(12)], "student": [model_identity(s_spec)] * 12, "n_tokens": [2] * 12,
        "alpha_grid": [GRID] * 12, "correct": [[bool(b) for b in rng.integers(0, 2, 3)] for _ in range(12)],
        "features": pa.array([lab.features for lab in labels], type=pa.list_(pa.float32(), 32)),
        "feature_layers": [[-1]] * 12, "feature_pool": ["concat"] * 12,
        "student_entropy": [lab.first_token["student_entropy"] for lab in labels],
        "student_top1_prob": [lab.first_token["student_top1_prob"] for lab in labels],
    })
    with pytest.warns(UserWarning, match="metrics will be noisy"):  # a deliberately small label set
        predictor = train_predictor(table, TrainSettings(model="torch_mlp", folds=2), ["t"])
    artifact = str(predictor.save(tmp_path / "art"))
    from predictor.features import feature_matrix

    expected = predictor.predict_alpha(feature_matrix(table, predictor.feature_spec))
    strategy = build_strategy("predicted_alpha", {"artifact": artifact}, load_online)
    strategy.check_student(model_identity(s_spec))
    gens = generate(decoder, strategy, prompts)
    assert [g.alpha for g in gens] == pytest.approx(expected.tolist(), abs=1e-6)
    for alpha in set(expected.tolist()):
        rows = [i for i, a in enumerate(expected) if a == alpha]
        fixed = generate(decoder, FixedAlpha(alpha, 2), [prompts[i] for i in rows])
        assert [gens[i].token_ids for i in rows] == [g.token_ids for g in fixed]
        assert all((gens[i].teacher_tokens_processed == 0) == (alpha == 0.0) for i in rows)
    with pytest.raises(UserError, match="built for student"):
        strategy.check_student(model_identity(t_spec))
    gate = build_strategy("entropy_gate", {"artifact": artifact}, load_online)
    calibrated = predictor.meta["entropy_gate"]
    assert (gate.lo, gate.hi, gate.alpha, gate.n_tokens) == (calibrated["lo"], calibrated["hi"], calibrated["alpha"], 2)
    with pytest.raises(UserError, match="calibrated for student"):
        gate.check_student(model_identity(t_spec))

    # result rows record what the strategies ran with, not only what the YAML said
    from pipeline.config import StrategySpec
    from pipeline.data.datasets import Example
    from pipeline.tasks.evaluate import EvalUnit, decode_unit

    examples = tuple(Example(f"t/{i}", i, f"what is {i}+{i}?", str(2 * i)) for i in range(4))
    for spec in (StrategySpec("predicted_alpha", {"artifact": artifact}), StrategySpec("entropy_gate", {"artifact": artifact})):
        rows = decode_unit(decoder, template, EvalUnit(0, (spec,), examples, "t", "test"))
        assert {r["n_tokens"] for r in rows} == {2}
        assert all(json.loads(r["params"])["artifact"] == artifact for r in rows)
        if spec.name == "entropy_gate":
            assert {(json.loads(r["params"])["lo"], json.loads(r["params"])["hi"]) for r in rows} == {(calibrated["lo"], calibrated["hi"])}


def test_model_facts_are_read_once_per_process(tiny_pair, monkeypatch):
    from pathlib import Path

    from pipeline.models.facts import model_facts

    spec = ModelSpec(str(tiny_pair[0]))
    first = model_facts(spec)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"weights re-read: {self}"))
    assert model_facts(ModelSpec(str(tiny_pair[0]))) is first


def test_two_model_predictor_reads_the_teacher_first_and_matches_its_labels(tiny_pair, tmp_path):
    """A two-model predictor online: every row's teacher prefill is paid, α equals what the
    predictor says on the label rows' features, and each row decodes as that fixed α."""
    from pipeline.decoding.features import STUDENT_STATS, TEACHER_STATS
    from predictor.features import feature_matrix

    s_spec, t_spec = ModelSpec(str(tiny_pair[0])), ModelSpec(str(tiny_pair[1]))
    student, teacher = load_model(s_spec), load_model(t_spec)
    vocab = shared_vocab_size(model_facts(s_spec), model_facts(t_spec))
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
                      StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 8))
    template = PromptTemplate(name="t", instruction="Solve.\n\n")
    prompts = [encode_prompt(student.tokenizer, template, f"what is {i}*{i}?") for i in range(12)]
    labels = label_batch(decoder, prompts, LabelSettings(alpha_grid=tuple(GRID), n_tokens=2))
    rng = np.random.default_rng(1)
    columns = {
        "example_id": [f"t/{i}" for i in range(12)], "student": [model_identity(s_spec)] * 12, "n_tokens": [2] * 12,
        "alpha_grid": [GRID] * 12, "correct": [[bool(b) for b in rng.integers(0, 2, 3)] for _ in range(12)],
        "features": pa.array([lab.features for lab in labels], type=pa.list_(pa.float32(), 32)),
        "feature_layers": [[-1]] * 12, "feature_pool": ["concat"] * 12,
    }
    columns.update({s: [lab.first_token[s] for lab in labels] for s in (*STUDENT_STATS, *TEACHER_STATS)})
    table = pa.table(columns)
    with pytest.warns(UserWarning, match="metrics will be noisy"):  # a deliberately small label set
        # random labels: the learned policy is forced (auto would fall back to the best fixed α)
        predictor = train_predictor(table, TrainSettings(model="torch_mlp", folds=2, features="two_model", policy="learned"), ["t"])
    assert predictor.feature_spec.needs_teacher and predictor.meta["metrics"]["teacher_call_share"] == 1.0
    artifact = str(predictor.save(tmp_path / "two"))
    expected = predictor.predict_alpha(feature_matrix(table, predictor.feature_spec))

    gens = generate(decoder, build_strategy("predicted_alpha", {"artifact": artifact}, load_online), prompts)
    assert [g.alpha for g in gens] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(g.teacher_tokens_processed > 0 for g in gens)  # the teacher's first distribution, for every row
    for alpha in set(expected.tolist()):
        rows = [i for i, a in enumerate(expected) if a == alpha]
        fixed = generate(decoder, FixedAlpha(alpha, 2), [prompts[i] for i in rows])
        assert [gens[i].token_ids for i in rows] == [g.token_ids for g in fixed]


def test_summary_records_what_an_artifact_strategy_resolved_to():
    import pyarrow as pa

    from pipeline.config import StrategySpec
    from pipeline.tasks.evaluate import summarize

    artifact = str(Path(__file__).resolve().parents[1] / "artifacts" / "alpha-demo-v2")
    spec = StrategySpec("entropy_gate", {"artifact": artifact})
    table = pa.table({"strategy": [spec.label] * 2, "example_id": ["a", "b"], "correct": [True, False],
                      "teacher_tokens": [1, 0], "teacher_tokens_processed": [9, 0], "teacher_calls": [1, 0], "latency_s": [0.1, 0.1]})
    [entry] = summarize(table, [spec])["strategies"]
    gate = json.loads((Path(artifact) / "metadata.json").read_text())["entropy_gate"]
    assert entry["params"] == {"artifact": artifact}
    assert entry["resolved_params"] == {"alpha": gate["alpha"], "n_tokens": 1, "lo": gate["lo"], "hi": gate["hi"], "artifact": artifact}
    assert entry["accuracy"] == 0.5 and entry["teacher_tokens_per_example"] == 0.5


def write_labels(table: pa.Table, path: Path) -> str:
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")
    return str(path)


def train_job(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m jobs.train_predictor ARGV` in this process: (exit status, stdout, stderr)."""
    from jobs.train_predictor import main
    from pipeline.cli import run_main

    with pytest.raises(SystemExit) as done:
        run_main(main, argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def one_error_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert line.startswith("error: "), err
    return line


def test_an_unwritable_out_is_refused_before_training(tmp_path, read_only_dir, capsys):
    """A read-only directory (made so as test_bad_inputs makes it, root included), and a path
    under a regular file: refused in one line before any training, nothing left behind."""
    labels = write_labels(synthetic_labels(), tmp_path / "labels")
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    for out in (read_only_dir / "art", read_only_dir / "deeper" / "art", blocker / "art", blocker / "deeper" / "art"):
        code, stdout, err = train_job(["--labels", labels, "--out", str(out)], capsys)
        assert f"cannot write the artifact to --out {out}" in one_error_line(code, err)
        assert "held-out accuracy" not in stdout  # refused before any training
    assert list(read_only_dir.iterdir()) == [] and blocker.read_text() == "mine"


@pytest.mark.parametrize("case,message", [
    ("two_labels", "2 labelled examples are too few for 5 outer × 3 inner folds: they need at least 15"),
    ("nan_features", "non-finite values (NaN, ±inf or missing) in 'features' of 1 example(s) (first: d/train/000003)"),
    ("nan_statistic", "non-finite values (NaN, ±inf or missing) in 'student_entropy' of 2 example(s)"),
    ("select_on_6", "--select compares 4 feature set × model combinations by inner cross-validation: it needs at least "
                    "100 labelled examples, got 6"),
    ("select_on_10", "it needs at least 100 labelled examples, got 10"),
    ("folds_1e9", "200 labelled examples are too few for 1000000000 outer × 3 inner folds: they need at least 3000000000"),
])
def test_labels_the_folds_cannot_use_are_one_line(tmp_path, capsys, case, message):
    table, extra = synthetic_labels(), []
    if case == "two_labels":
        table = table.slice(0, 2)
    elif case == "nan_features":
        feats = table.column("features").to_pylist()
        feats[3][2] = float("nan")
        table = table.set_column(table.schema.get_field_index("features"), "features",
                                 pa.array(feats, type=table.schema.field("features").type))
    elif case == "nan_statistic":
        entropy = table.column("student_entropy").to_pylist()
        entropy[5], entropy[9] = float("nan"), float("inf")
        table = table.set_column(table.schema.get_field_index("student_entropy"), "student_entropy", pa.array(entropy))
    elif case.startswith("select_on"):
        table = table.slice(0, int(case.rsplit("_", 1)[1]))
        config = tmp_path / "select.yaml"
        config.write_text("select_features: [student, hidden]\nselect_models: [sklearn_logreg, sklearn_hgb]\n")
        extra = ["--select", "--folds", "2", "--config", str(config)]
    elif case == "folds_1e9":
        extra = ["--folds", str(10**9)]
    labels = write_labels(table, tmp_path / "labels")
    code, _, err = train_job(["--labels", labels, "--out", str(tmp_path / "art"), *extra], capsys)
    assert message in one_error_line(code, err)
    assert not (tmp_path / "art").exists()


def test_select_chooses_per_outer_fold_on_its_inner_scores(tmp_path, capsys):
    """`--select`, nested: each outer fold picks the combination with the best inner score of
    its own training split, and its held-out rows are that combination's fold model's."""
    import pyarrow.parquet as pq

    from predictor.crossval import nested_cross_validation
    from predictor.features import FeatureSpec, feature_matrix
    from predictor.models import MODELS

    # a weaker signal (a quarter of the labels flipped, a noisy entropy): the combinations come
    # close, and the folds' own inner scores disagree on which is best
    table, rng = synthetic_labels(n=120), np.random.default_rng(0)
    table = table.append_column("student_topk_probs", pa.array(rng.uniform(size=(120, 4)).tolist()))
    flip = rng.random(120) < 0.25
    correct = [[not c for c in row] if f else row for row, f in zip(table.column("correct").to_pylist(), flip)]
    table = table.set_column(table.schema.get_field_index("correct"), "correct", pa.array(correct))
    entropy = table.column("student_entropy").to_numpy() + rng.normal(scale=0.8, size=120)
    table = table.set_column(table.schema.get_field_index("student_entropy"), "student_entropy", pa.array(entropy))
    labels = write_labels(table, tmp_path / "labels")
    config = tmp_path / "select.yaml"
    config.write_text("select_features: [stats, hidden, student]\nselect_models: [sklearn_logreg]\n")
    out = tmp_path / "art"
    code, stdout, err = train_job(["--labels", labels, "--out", str(out), "--select", "--folds", "3", "--inner-folds", "2",
                                   "--config", str(config)], capsys)
    assert code == 0, err
    meta = Predictor.load(out).meta
    table_rows = {(r["features"], r["model"]): r for r in meta["selection"]}
    assert len(table_rows) == 3 and [p["fold"] for p in meta["selection_per_fold"]] == [0, 1, 2]
    assert len({p["features"] for p in meta["selection_per_fold"]}) > 1  # chosen per fold, not once for all
    heldout = pd.read_parquet(out / "heldout.parquet")
    Y = np.asarray(table.column("correct").to_pylist(), dtype=bool)
    tokens = teacher_tokens(GRID, 2)
    ids = table.column("example_id").to_pylist()
    for pick in meta["selection_per_fold"]:
        fold = pick["fold"]
        # the fold's own inner scores chose it (first of equals in the listed order)
        scores = [r["inner_cv_utility_per_fold"][fold] for r in meta["selection"]]
        first_best = meta["selection"][scores.index(max(scores))]
        assert (pick["features"], pick["model"]) == (first_best["features"], first_best["model"])
        assert fold in table_rows[(pick["features"], pick["model"])]["chosen_in_folds"]
        # and that combination's fold model decided the fold's held-out rows
        spec = FeatureSpec.of_labels(table, pick["features"])
        alone = nested_cross_validation(lambda: MODELS[pick["model"]](), feature_matrix(table, spec), Y, GRID, tokens, 0.0,
                                        3, 2, 0, ids).parts[fold]
        rows = heldout[heldout["fold"] == fold]
        assert set(rows["features"]) == {pick["features"]} and set(rows["model"]) == {pick["model"]}
        assert rows["example_id"].tolist() == alone["example_id"].tolist()
        assert rows["chosen_alpha"].tolist() == alone["chosen_alpha"].tolist()
    assert meta["metrics"]["predicted_alpha_acc"] == pytest.approx(heldout["predicted_correct"].mean())
    for r in meta["selection"]:  # the printed table says which folds chose what
        assert f"folds {','.join(map(str, r['chosen_in_folds'])) or '-'}" in stdout
    assert pq.read_table(out / "heldout.parquet").num_rows == 120


def test_without_signal_the_artifact_falls_back_to_the_best_fixed_alpha(tiny_pair, tmp_path):
    """Labels whose features say nothing (noise): auto picks the fixed policy, says why, and
    every row decodes with its default α, as that fixed α decodes it."""
    s_spec, t_spec = ModelSpec(str(tiny_pair[0])), ModelSpec(str(tiny_pair[1]))
    student, teacher = load_model(s_spec), load_model(t_spec)
    vocab = shared_vocab_size(model_facts(s_spec), model_facts(t_spec))
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
                      StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 8))
    template = PromptTemplate(name="t", instruction="Solve.\n\n")
    prompts = [encode_prompt(student.tokenizer, template, f"what is {i}-{i}?") for i in range(8)]
    n, rng = 200, np.random.default_rng(7)
    table = synthetic_labels(n=n, dim=32, student=model_identity(s_spec))  # the tiny student's width
    noise = [[bool(rng.random() < 0.6), bool(rng.random() < 0.2), bool(rng.random() < 0.4)] for _ in range(n)]
    table = table.set_column(table.schema.get_field_index("correct"), "correct", pa.array(noise))
    predictor = train_predictor(table, TrainSettings(folds=4), ["noise"])
    policy = predictor.meta["policy"]
    assert policy["kind"] == "fixed" and policy["default_alpha"] == 1.0  # α=1 is right most often
    assert policy["reason"].startswith(("the learned policy does not beat the best fixed α",
                                        "cross-validation found no threshold"))
    artifact = str(predictor.save(tmp_path / "fixed"))
    strategy = build_strategy("predicted_alpha", {"artifact": artifact}, load_online)
    assert strategy.note() == (f"{artifact} uses the fixed policy: every example decodes with α = 1 (the best fixed α of "
                               f"its labels): {policy['reason']}")
    rows = np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32)
    from predictor.features import assemble

    features = assemble(rows, {"student_entropy": rows[:, 0], "student_top1_prob": rows[:, 1]}, predictor.feature_spec)
    assert predictor.predict_alpha(features).tolist() == [1.0] * 50
    gens = generate(decoder, strategy, prompts)
    assert [g.alpha for g in gens] == [1.0] * len(prompts)
    assert [g.token_ids for g in gens] == [g.token_ids for g in generate(decoder, FixedAlpha(1.0, 2), prompts)]


def test_a_warm_start_from_an_artifact_trained_on_these_labels_is_refused(tmp_path, capsys):
    first = train_predictor(synthetic_labels(n=100), TrainSettings(folds=2), ["a"])
    with pytest.raises(UserError, match="--init-from: 40 of these 100 labelled examples are among the 100 the warm-start"):
        train_predictor(synthetic_labels(n=100, seed=1, first_id=60), TrainSettings(folds=2), ["b"], init=first)
    # the same from the job, reading the saved artifact's training rows
    saved = str(first.save(tmp_path / "first"))
    labels = write_labels(synthetic_labels(n=100, seed=1, first_id=99), tmp_path / "labels")
    code, _, err = train_job(["--labels", labels, "--out", str(tmp_path / "again"), "--folds", "2", "--init-from", saved], capsys)
    assert "1 of these 100 labelled examples are among the 100" in one_error_line(code, err)
    fresh = write_labels(synthetic_labels(n=100, seed=1, first_id=100), tmp_path / "fresh")
    code, _, err = train_job(["--labels", fresh, "--out", str(tmp_path / "again"), "--folds", "2", "--init-from", saved], capsys)
    assert code == 0, err
