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
    (tmp_path / "dir-link").symlink_to(artifact)
    with pytest.raises(UserError, match="not a symbolic link"):
        Predictor.load(tmp_path / "dir-link")


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
