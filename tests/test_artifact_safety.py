"""An α-predictor artifact cannot run code when loaded, and a changed one is refused."""
import hashlib
import json
import pickle
import shutil

import pytest
from test_predictor import synthetic_labels

from pipeline.errors import UserError
from predictor.artifact import Predictor, metadata_digest
from pipeline.decoding.strategies import build_strategy
from predictor.online import load_online
from predictor.training import TrainSettings, train_predictor


class Payload:
    """Unpickling this writes a marker file: what a crafted model file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    table = synthetic_labels(n=60)
    with pytest.warns(UserWarning, match="metrics will be noisy"):  # a deliberately small label set
        return train_predictor(table, TrainSettings(folds=2), ["synthetic"]).save(tmp_path_factory.mktemp("art") / "good")


def tampered(artifact, tmp_path, edit, restamp=True):
    """A copy with `edit` applied; `restamp`: the editor also recomputed the metadata's own
    sha256, as anyone who reads this code can, so the checks behind it must hold alone."""
    copy = tmp_path / "art"
    shutil.copytree(artifact, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    edit(copy, meta)
    if restamp:
        meta["metadata_sha256"] = metadata_digest(meta)
    (copy / "metadata.json").write_text(json.dumps(meta))
    return copy


def test_the_saved_artifact_loads_and_records_every_file_hash(artifact):
    meta = json.loads((artifact / "metadata.json").read_text())
    assert meta["model_file"] == "model.skops" and set(meta["files"]) == {"model.skops", "heldout.parquet"}
    assert Predictor.load(artifact).n_tokens == 2


@pytest.mark.parametrize("how", ["pickle_as_model_with_matching_hash", "legacy_joblib_artifact"])
def test_a_malicious_pickle_is_refused_and_never_runs(artifact, tmp_path, how):
    marker = tmp_path / "pwned"

    def plant(copy, meta):
        payload = pickle.dumps(Payload(marker))
        if how == "legacy_joblib_artifact":
            (copy / "model.joblib").write_bytes(payload)
            meta.update(format_version=1, model_file="model.joblib")
            meta.pop("files")
        else:  # the attacker rewrote metadata.json too, so the hash matches
            (copy / "model.skops").write_bytes(payload)
            meta["files"]["model.skops"] = hashlib.sha256(payload).hexdigest()

    copy = tampered(artifact, tmp_path, plant)
    with pytest.raises(UserError):
        Predictor.load(copy)
    with pytest.raises(UserError):
        build_strategy("predicted_alpha", {"artifact": str(copy)}, load_online)  # what checking a config does
    assert not marker.exists()


@pytest.mark.parametrize("edit,message", [
    (lambda copy, meta: (copy / "model.skops").write_bytes((copy / "model.skops").read_bytes()[:100]), "does not match the sha256"),
    (lambda copy, meta: meta.update(model_file="../good/model.skops", files={**meta["files"], "../good/model.skops": "x"}), "outside the artifact"),
    (lambda copy, meta: meta.pop("files"), "malformed artifact metadata"),
])
def test_a_changed_truncated_or_escaping_artifact_is_refused(artifact, tmp_path, edit, message):
    with pytest.raises(UserError, match=message):
        Predictor.load(tampered(artifact, tmp_path, edit))


def test_malformed_metadata_is_one_clear_error(artifact, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(artifact, copy)
    (copy / "metadata.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Predictor.load(copy)


@pytest.mark.parametrize("edit,message", [
    (lambda copy, meta: meta["policy"].update(default_alpha=0.123), "decision policy"),
    (lambda copy, meta: meta["policy"].update(threshold=float("nan")), "decision policy"),
    (lambda copy, meta: meta.update(alpha_grid=[float("nan")] * len(meta["alpha_grid"])), "decision policy"),
    (lambda copy, meta: meta.update(teacher_tokens=[1]), "decision policy"),
])
def test_a_malformed_decision_policy_is_refused(artifact, tmp_path, edit, message):
    with pytest.raises(UserError, match=message):
        Predictor.load(tampered(artifact, tmp_path, edit))


def test_a_gradient_boosted_artifact_loads_and_a_crafted_tree_is_refused(tmp_path):
    """skops flags scikit-learn's TreePredictor (node indices followed without bounds checks);
    the artifact accepts it only after checking every node of every tree."""
    import numpy as np
    import skops.io

    with pytest.warns(UserWarning, match="metrics will be noisy"):
        predictor = train_predictor(synthetic_labels(n=80), TrainSettings(model="sklearn_hgb", folds=2), ["s"])
    good = predictor.save(tmp_path / "hgb")
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    assert np.allclose(Predictor.load(good).predict_proba(x), predictor.predict_proba(x))

    columns = skops.io.load(good / "model.skops", trusted=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
    booster = next(c for c in columns if not isinstance(c, float))[-1]
    tree = booster._predictors[0][0]
    inner = np.flatnonzero(~tree.nodes["is_leaf"].astype(bool))[0]
    tree.nodes["left"][inner] = 10**6  # out of bounds: predict would read past the array
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    skops.io.dump(columns, bad / "model.skops")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["files"]["model.skops"] = hashlib.sha256((bad / "model.skops").read_bytes()).hexdigest()  # the attacker fixes the hash
    meta["metadata_sha256"] = metadata_digest(meta)
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="points outside its tree"):
        Predictor.load(bad)


def test_edited_metadata_a_symlink_or_a_missing_tensor_is_one_line(artifact, tmp_path):
    nan_grid = tampered(artifact, tmp_path, lambda copy, meta: meta.update(alpha_grid=[float("nan")] * len(meta["alpha_grid"])),
                        restamp=False)
    with pytest.raises(UserError, match="metadata.json was changed after training"):
        Predictor.load(nan_grid)

    outside = tmp_path / "outside.skops"
    shutil.copy(artifact / "model.skops", outside)
    linked = tmp_path / "linked"
    shutil.copytree(artifact, linked)
    (linked / "model.skops").unlink()
    (linked / "model.skops").symlink_to(outside)  # same bytes, same hash: still refused
    with pytest.raises(UserError, match="outside the artifact"):
        Predictor.load(linked)
    (linked / "metadata.json").unlink()
    (linked / "metadata.json").symlink_to(artifact / "metadata.json")
    with pytest.raises(UserError, match="not symbolic links"):
        Predictor.load(linked)


def test_a_symlinked_artifact_directory_loads_and_its_files_stay_inside_it(artifact, tmp_path):
    """A link to the directory (or to a folder above it) is a normal layout: resolved once,
    then every file is read inside the real directory, and a file there that links out is refused."""
    (tmp_path / "dir-link").symlink_to(artifact)
    (tmp_path / "folder-link").symlink_to(artifact.parent)
    for path in (tmp_path / "dir-link", tmp_path / "folder-link" / artifact.name):
        loaded = Predictor.load(path)
        assert loaded.n_tokens == 2 and loaded.directory == artifact.resolve()
        build_strategy("predicted_alpha", {"artifact": str(path)}, load_online)
    real = tmp_path / "real"
    shutil.copytree(artifact, real)
    (real / "heldout.parquet").unlink()
    (real / "heldout.parquet").symlink_to(artifact / "heldout.parquet")  # same bytes, outside the directory
    (tmp_path / "real-link").symlink_to(real)
    with pytest.raises(UserError, match="outside the artifact"):
        Predictor.load(tmp_path / "real-link")


def test_an_mlp_artifact_without_a_tensor_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.warns(UserWarning, match="metrics will be noisy"):
        good = train_predictor(synthetic_labels(n=60), TrainSettings(model="torch_mlp", folds=2), ["s"]).save(tmp_path / "mlp")
    tensors = load_file(str(good / "model.safetensors"))
    tensors.pop("net.2.weight")
    save_file(tensors, str(good / "model.safetensors"))

    def rehash(copy, meta):
        meta["files"]["model.safetensors"] = hashlib.sha256((copy / "model.safetensors").read_bytes()).hexdigest()

    with pytest.raises(UserError, match="cannot load its torch_mlp model: KeyError"):
        Predictor.load(tampered(good, tmp_path, rehash))


def test_an_artifact_of_the_previous_format_still_loads(artifact, tmp_path):
    """Format 3 artifacts were trained before the metadata carried its own digest."""
    older = tampered(artifact, tmp_path, lambda copy, meta: (meta.update(format_version=3), meta.pop("metadata_sha256")),
                     restamp=False)
    assert Predictor.load(older).n_tokens == 2


BUDGET = {"signal": "entropy", "threshold": 0.5, "k": 3, "alpha": 0.5, "accuracy": 0.9, "accuracy_lo": 0.8, "accuracy_hi": 0.95,
          "n": 60, "teacher_tokens_per_example": 1.2, "unlabelled_share": 0.0, "first_alpha_from": "held-out predictions"}
NAN = float("nan")


@pytest.mark.parametrize("edit", [
    pytest.param(lambda meta: meta.update(n_tokens="many"), id="n_tokens_many"),
    pytest.param(lambda meta: meta.update(n_tokens=0), id="n_tokens_zero"),
    pytest.param(lambda meta: meta.update(n_tokens=True), id="n_tokens_bool"),
    pytest.param(lambda meta: meta.update(n_tokens=10**30, teacher_tokens=[10**30 if a else 0 for a in meta["alpha_grid"]]),
                 id="n_tokens_astronomical"),
    pytest.param(lambda meta: meta.update(n_tokens=5), id="n_tokens_not_its_teacher_tokens"),
    pytest.param(lambda meta: meta.update(teacher_tokens=[0] * len(meta["alpha_grid"])), id="teacher_tokens_free"),
    pytest.param(lambda meta: meta.update(teacher_token_cost=NAN), id="teacher_token_cost_nan"),
    pytest.param(lambda meta: meta["policy"].update(threshold="0.1"), id="threshold_text"),
    pytest.param(lambda meta: meta["alpha_grid"].__setitem__(1, 1e308), id="grid_alpha_huge"),  # 0.5, never the default
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "k": -5, "threshold": NAN, "alpha": 1e308}), id="budget_of_the_issue"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "k": 1}), id="budget_k_below_n"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "k": 2.5}), id="budget_k_fraction"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "threshold": float("inf")}), id="budget_threshold_inf"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "alpha": 101.0}), id="budget_alpha_beyond_schema"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "signal": "vibes"}), id="budget_signal_unknown"),
    pytest.param(lambda meta: meta.update(budget={**BUDGET, "accuracy": NAN}), id="budget_accuracy_nan"),
    pytest.param(lambda meta: meta.update(budget="yes"), id="budget_not_a_mapping"),
    pytest.param(lambda meta: meta["entropy_gate"].update(alpha=1e308), id="gate_alpha_huge"),
    pytest.param(lambda meta: meta["entropy_gate"].update(lo=NAN), id="gate_lo_nan"),
    pytest.param(lambda meta: meta["entropy_gate"].update(lo=9.0, hi=1.0), id="gate_band_reversed"),
    pytest.param(lambda meta: meta.pop("entropy_gate"), id="gate_missing"),
])
@pytest.mark.parametrize("format_version", [4, 3])
def test_every_calibrated_number_is_checked_on_load(artifact, tmp_path, edit, format_version):
    """With its digest recomputed (format 4), or downgraded to format 3 with the digest removed
    (format 3 has none to check): each number a strategy takes from the artifact is checked
    when the artifact is read, so a bad one never decodes."""
    def change(copy, meta):
        edit(meta)
        if format_version == 3:
            meta.update(format_version=3)
            meta.pop("metadata_sha256")

    copy = tampered(artifact, tmp_path, change, restamp=format_version == 4)
    with pytest.raises(UserError, match="malformed artifact metadata"):
        Predictor.load(copy)
    for name in ("predicted_alpha", "entropy_gate", "budget"):  # what checking a config does
        with pytest.raises(UserError, match="malformed artifact metadata"):
            build_strategy(name, {"artifact": str(copy)}, load_online)


def test_a_sound_calibrated_budget_loads_in_either_format(artifact, tmp_path):
    for format_version in (4, 3):
        def change(copy, meta):
            meta.update(budget=BUDGET)
            if format_version == 3:
                meta.update(format_version=3)
                meta.pop("metadata_sha256")

        copy = tampered(artifact, tmp_path / str(format_version), change, restamp=format_version == 4)
        budget = build_strategy("budget", {"artifact": str(copy)}, load_online)
        assert (budget.k, budget.threshold, budget.signal, budget.alpha) == (3, 0.5, "entropy", 0.5)


@pytest.mark.parametrize("name", ["alpha-demo-v2", "alpha-demo-mlp-v2", "alpha-demo-v3"])
def test_the_shipped_artifacts_pass_every_check(name):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "artifacts" / name
    loaded = Predictor.load(shipped)
    assert loaded.n_tokens == 1 and loaded.meta["format_version"] == 4
    for strategy in ("predicted_alpha", "entropy_gate", "budget"):
        build_strategy(strategy, {"artifact": str(shipped)}, load_online)
