import json
from pathlib import Path

import pytest

from pipeline.config.sections import DatasetSpec
from pipeline.data.answers import answers_match, extract_answer, normalize_number
from pipeline.data.rows import RowProblem, RowReader

GSM8K = RowReader.for_spec(DatasetSpec(benchmark="gsm8k"))

GSM8K_DIR = Path(__file__).resolve().parent / "fixtures/gsm8k"  # a slice shipped with the tests


def _gsm8k_rows(split: str, n: int) -> list[dict]:
    path = GSM8K_DIR / f"{split}.jsonl"
    assert path.is_file(), f"GSM8K slice missing: expected {path}"
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


# --- extraction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("So 3 + 4 = 7. The answer is 7.", "7."),
        ("The answer is 18", "18"),
        ("The answer is -5.", "-5."),
        ("The answer is $1,000.00.", "$1,000.00."),
        ("The answer is 12. Q: what about 99? The answer is 99.", "12."),  # first strict match
        ("There are 5 apples and 10 pears. The answer is 5.", "5."),  # strict beats last number
    ],
)
def test_extract_strict(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She has 3 cats and 12 dogs, so 15 pets.", "15"),
        ("So she has 15.", "15."),
        ("The total is -3", "-3"),
        ("It costs $1,000.00", "$1,000.00"),
        ("answer: 42", "42"),
        ("the answer is 7", "7"),  # lower case is not the strict pattern, but fallback finds it
        ("The answer is unclear, maybe 4 or 6", "6"),
        ("Wait... 8 then...", "8"),  # "..." has no digit and is not an answer
    ],
)
def test_extract_fallback_last_number(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "no numbers here", "The answer is unknown.", "...", "$ , ."])
def test_extract_no_number(text):
    assert extract_answer(text) is None


# --- normalization and matching ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("42", "42"),
        ("42.0", "42"),
        ("42.", "42"),
        ("-3", "-3"),
        ("-3.", "-3"),
        ("2.5", "2.5"),
        ("2.50", "2.5"),
        (".5", "0.5"),
        ("1,000", "1000"),
        ("$5", "5"),
        ("$1,000.00.", "1000"),
        ("-$5", "-5"),
        ("  7 \n", "7"),
        ("-0", "0"),
        ("0.000", "0"),
        ("1000", "1000"),  # no "1E+3"
        ("109,200,000", "109200000"),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "abc", "1.2.3", "$", ".", "nan", "inf", "1e3", "5-3"])
def test_normalize_not_a_number(raw):
    assert normalize_number(raw) is None


@pytest.mark.parametrize(
    "pred, gold",
    [("42", "42"), ("42.0", "42"), ("$42.", "42"), ("1,000", "1000"), ("$1,000.00", "1000"), ("-3", "-3.0")],
)
def test_answers_match(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [("41", "42"), ("-42", "42"), (None, "42"), ("42", None), (None, None), ("abc", "abc"), ("4.2", "42")],
)
def test_answers_do_not_match(pred, gold):
    assert not answers_match(pred, gold)


def test_extract_then_match_end_to_end():
    completion = "He pays 2 * $500 = $1,000.\nThe answer is $1,000."
    assert answers_match(extract_answer(completion), "1000")


# --- GSM8K gold answers -----------------------------------------------------------------


def gold_from_gsm8k(answer: str) -> str:
    """The gold a GSM8K row gives, through the benchmark's own reader (the number after '#### ')."""
    try:
        return GSM8K.read({"question": "q", "answer": answer}).gold
    except RowProblem as problem:
        raise ValueError(str(problem)) from None


def test_gold_from_gsm8k():
    assert gold_from_gsm8k("3 + 4 = 7\n#### 7") == "7"
    assert gold_from_gsm8k("#### 1,200") == "1200"
    assert gold_from_gsm8k("a #### 1\nthen\n#### -4") == "-4"  # the last marker counts


@pytest.mark.parametrize("answer", ["no marker 7", "#### ", "#### seven", "####7"])
def test_gold_from_gsm8k_missing(answer):
    with pytest.raises(ValueError):
        gold_from_gsm8k(answer)


def test_gold_from_real_gsm8k_test_rows():
    rows = _gsm8k_rows("test", 20)
    assert gold_from_gsm8k(rows[0]["answer"]) == "18"
    for row in rows:
        raw = row["answer"].rsplit("#### ", 1)[1].strip()
        assert gold_from_gsm8k(row["answer"]) == raw.replace(",", "")


def test_extract_from_real_gsm8k_solutions_in_cot_form():
    """A solution rewritten to end "The answer is N." must extract N (200 train rows)."""
    rows = _gsm8k_rows("train", 200)
    assert len(rows) == 200
    for i, row in enumerate(rows):
        body, raw_gold = row["answer"].rsplit("#### ", 1)
        gold = raw_gold.strip()
        cot = body.rstrip() + f"\nThe answer is {gold}."
        extracted = extract_answer(cot)
        assert normalize_number(extracted) == gold_from_gsm8k(row["answer"]), (i, cot[-120:])
        assert answers_match(extracted, gold), (i, extracted, gold)
