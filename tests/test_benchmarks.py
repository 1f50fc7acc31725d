import json
import re
from pathlib import Path

import datasets
import pytest

from pipeline.config import DatasetSpec, RunConfig

from pipeline.data.datasets import Example, dataset_fingerprint, load_examples
from pipeline.errors import UserError

GSM8K_TEST = Path(__file__).resolve().parent / "fixtures/gsm8k/test.jsonl"  # a slice shipped with the tests


@pytest.fixture(scope="module")
def gsm8k_test() -> Path:
    assert GSM8K_TEST.is_file(), f"GSM8K slice missing: expected {GSM8K_TEST}"
    return GSM8K_TEST


def _raw_rows(path: Path, n: int) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(q="What is 3 + 4?", a="3 + 4 = 7\n#### 7") -> str:
    return json.dumps({"question": q, "answer": a})


# --- real GSM8K rows --------------------------------------------------------------------


def test_load_real_gsm8k_first_20(gsm8k_test):
    spec = DatasetSpec(str(gsm8k_test), limit=20)
    examples = load_examples(spec)
    raw = _raw_rows(gsm8k_test, 20)

    assert len(examples) == 20
    assert examples[0].gold == "18"
    assert examples[0].id == "gsm8k/test/000000"  # name and split inferred from .../gsm8k/test.jsonl
    for i, (ex, row) in enumerate(zip(examples, raw)):
        assert ex.index == i
        assert ex.question == row["question"]
        assert ex.gold == row["answer"].rsplit("#### ", 1)[1].strip().replace(",", "")


def test_ids_and_fingerprint_stable(gsm8k_test):
    spec = DatasetSpec(str(gsm8k_test), name="gsm8k", limit=20)
    first, second = load_examples(spec), load_examples(spec)
    assert [e.id for e in first] == [e.id for e in second]
    assert first == second
    assert first[3].id == "gsm8k/test/000003"
    assert len({e.id for e in first}) == 20

    fp = dataset_fingerprint(first)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fp == dataset_fingerprint(second)
    assert fp != dataset_fingerprint(first[:19])


def test_offset_keeps_row_ids(gsm8k_test):
    whole = load_examples(DatasetSpec(str(gsm8k_test), limit=10))
    window = load_examples(DatasetSpec(str(gsm8k_test), offset=5, limit=3))
    assert window == whole[5:8]
    assert [e.id for e in window] == ["gsm8k/test/000005", "gsm8k/test/000006", "gsm8k/test/000007"]


def test_fingerprint_sees_content_changes():
    a = [Example("d/test/000000", 0, "q", "1")]
    b = [Example("d/test/000000", 0, "q", "2")]
    c = [Example("d/test/000000", 0, "q?", "1")]
    assert len({dataset_fingerprint(a), dataset_fingerprint(b), dataset_fingerprint(c)}) == 3


# --- generic JSONL ----------------------------------------------------------------------


def test_custom_fields_plain_answers(tmp_path):
    path = _write_jsonl(
        tmp_path / "arith.jsonl",
        [
            json.dumps({"q": "3 + 4?", "a": "7"}),
            "",  # blank lines are skipped
            json.dumps({"q": "1000 * 1.5?", "a": "1,500.0"}),
            json.dumps({"q": "2 - 5?", "a": "-3"}),
        ],
    )
    spec = DatasetSpec(str(path), question_field="q", answer_field="a", answer_format="plain", split="test")
    examples = load_examples(spec)
    assert [e.question for e in examples] == ["3 + 4?", "1000 * 1.5?", "2 - 5?"]
    assert [e.gold for e in examples] == ["7", "1500", "-3"]
    assert [e.id for e in examples] == ["arith/test/000000", "arith/test/000001", "arith/test/000002"]


def test_plain_numeric_json_answers(tmp_path):
    path = _write_jsonl(tmp_path / "n.jsonl", [json.dumps({"q": "x", "a": 7}), json.dumps({"q": "y", "a": 8})])
    spec = DatasetSpec(str(path), question_field="q", answer_field="a", answer_format="plain", split="dev")
    assert [(e.id, e.gold) for e in load_examples(spec)] == [("n/dev/000000", "7"), ("n/dev/000001", "8")]


# --- bad input --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match="dataset file not found") as err:
        load_examples(DatasetSpec(str(missing), split="test"))
    assert str(missing) in str(err.value)


def test_malformed_json_line_names_line_number(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [_row(), "", '{"question": "oops", "answer": ', _row()])
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(path), split="test"))
    message = str(err.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "line 3" in message  # the blank line 2 still counts
    assert "\n" not in message


def test_missing_field_names_lines(tmp_path):
    path = _write_jsonl(
        tmp_path / "fields.jsonl",
        [_row(), json.dumps({"question": "no answer"}), _row(), json.dumps({"answer": "#### 1"})],
    )
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(path), split="test"))
    message = str(err.value)
    assert "missing field 'answer' (line 2)" in message
    assert "missing field 'question' (line 4)" in message


def test_not_an_object_and_no_marker(tmp_path):
    path = _write_jsonl(tmp_path / "x.jsonl", ["[1, 2]", _row(a="the answer is 7")])
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(path), split="test"))
    message = str(err.value)
    assert "not a JSON object (line 1)" in message
    assert "'#### '" in message and "(line 2)" in message


def test_many_bad_lines_are_summarized(tmp_path):
    path = _write_jsonl(tmp_path / "many.jsonl", ["{bad"] * 8)
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(path), split="test"))
    assert "lines 1, 2, 3, 4, 5 …and 3 more" in str(err.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match="dataset is empty"):
        load_examples(DatasetSpec(str(path), split="test"))


def test_empty_after_offset(tmp_path):
    path = _write_jsonl(tmp_path / "two.jsonl", [_row(), _row()])
    with pytest.raises(UserError, match="empty"):
        load_examples(DatasetSpec(str(path), split="test", offset=2))


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": -1}, {"offset": -1}, {"answer_format": "mcq"}, {"source": ""}],
)
def test_invalid_spec(kwargs):
    with pytest.raises(UserError):
        DatasetSpec(**{"source": "data.jsonl", **kwargs})


def test_default_names():
    assert DatasetSpec("some/dir/math.jsonl", split="test").name == "math"
    assert DatasetSpec("openai/gsm8k", config="main").name == "gsm8k"
    assert not DatasetSpec("openai/gsm8k").is_local


def test_a_local_files_split_is_given_or_read_off_its_name_never_assumed():
    """Labels from a train file must not carry test ids: the split comes from the config or
    the file's name, and a config that contradicts the name is refused."""
    spec = DatasetSpec("data/gsm8k/train.jsonl")
    assert (spec.split, spec.name) == ("train", "gsm8k")
    assert spec.inferred == ("dataset data/gsm8k/train.jsonl: inferred split=train, name=gsm8k "
                             "(set dataset.split / dataset.name to choose)")
    assert DatasetSpec("data/gsm8k/train.jsonl", split="train", name="g").inferred == ""
    with pytest.raises(UserError, match="split is required"):
        DatasetSpec("data/svamp.jsonl")
    with pytest.raises(UserError, match="named for the 'train' split"):
        DatasetSpec("data/gsm8k/train.jsonl", split="test")
    assert "inferred" not in str(RunConfig(dataset=spec).to_dict())


def test_hub_failure_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cache only: the loader below is what fails
    calls = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec("openai/gsm8k", config="main"))
    message = str(err.value)
    assert "openai/gsm8k" in message and "Couldn't reach" in message
    assert "\n" not in message
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]


def test_hub_rows_are_read(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {"question": ["a?", "b?", "c?"], "answer": ["#### 1", "#### 2,000", "#### 3"]}
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict(rows))
    examples = load_examples(DatasetSpec("openai/gsm8k", config="main", offset=1))
    assert [(e.id, e.gold) for e in examples] == [("gsm8k/test/000001", "2000"), ("gsm8k/test/000002", "3")]


def test_hub_missing_field(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict({"problem": ["x"]}))
    with pytest.raises(UserError, match="no field"):
        load_examples(DatasetSpec("org/data"))
