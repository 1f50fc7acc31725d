"""A Hub id that cannot be fetched fails at once with one line, instead of a minute of retries."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import hub
from pipeline.config import DatasetSpec, ModelSpec
from pipeline.data.datasets import load_examples
from pipeline.errors import UserError
from pipeline.models.facts import model_facts
from pipeline.models.loading import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
RETRY_LOOP_S = 5.0  # transformers' own retries without network take 30 s and more


@pytest.fixture
def fresh_probe():
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_hub_model_under_hf_hub_offline_fails_at_once_naming_the_fix(monkeypatch, fresh_probe):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set and it is not in the local cache.*local-dir") as err:
        load_tokenizer(ModelSpec("someone/not-cached-model"))
    assert time.monotonic() - start < RETRY_LOOP_S
    assert "\n" not in str(err.value)


def test_unreachable_hub_fails_at_once_for_models_and_datasets(monkeypatch, fresh_probe):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    start = time.monotonic()
    with pytest.raises(UserError, match="unreachable"):
        model_facts(ModelSpec("someone/other-model"))
    with pytest.raises(UserError, match="dataset.source at a local JSONL"):
        load_examples(DatasetSpec("someone/some-dataset", split="test", name="x"))
    assert time.monotonic() - start < RETRY_LOOP_S


@pytest.mark.slow  # a Python process per case
@pytest.mark.parametrize("offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["hf_hub_offline", "hub_unreachable"])
def test_a_cached_hub_model_loads_from_the_cache(tiny_pair, tmp_path, offline):
    """A Hub id already in the local cache (the layout huggingface_hub writes) loads from the
    cache only, whether HF_HUB_OFFLINE is set or the Hub does not answer."""
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_pair[0], snapshot)
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    env = {**{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}, "HF_HUB_CACHE": str(tmp_path / "hub"), **offline}
    code = ("from pipeline.config import ModelSpec; from pipeline.models.loading import load_model; "
            "print(load_model(ModelSpec('org/tiny')).model.config.hidden_size)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "32"
