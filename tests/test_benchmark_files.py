"""Benchmark files: every shipped one loads, and real-format rows load through it."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import DatasetSpec, parse_config
from pipeline.config.benchmark_spec import BENCHMARK_DIR
from pipeline.data.answer_types import score
from pipeline.data.benchmarks import known_benchmarks, load_benchmark
from pipeline.data.datasets import load_examples
from pipeline.data.prompts import load_template
from pipeline.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
SHIPPED = ["arc_challenge", "arc_easy", "asdiv", "commonsense_qa", "gsm8k", "math", "multiarith", "strategyqa", "svamp"]


def local(name: str, **kw) -> list:
    return load_examples(DatasetSpec(str(FIXTURES / f"{name}.jsonl"), benchmark=name, split="test", **kw))


def test_every_shipped_benchmark_loads_with_its_template_and_answer_type():
    assert known_benchmarks() == SHIPPED
    for name in SHIPPED:
        bench = load_benchmark(name)
        assert bench.name == name and bench.answer_type.name == bench.spec.answer_type
        assert bench.spec.hub and bench.spec.split and bench.template.exemplars, name
        for shot in bench.template.exemplars:  # each exemplar's answer is one the strict rule reads
            assert shot.answer.rstrip().endswith("."), (name, shot.answer)
            assert bench.answer_type.strict(shot.answer, tuple("ABCDE")) is not None, (name, shot.answer)


@pytest.mark.parametrize("name", SHIPPED)
def test_real_format_rows_load_through_the_benchmark(name):
    rows = [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines()]
    examples = local(name)
    assert len(examples) == len(rows)
    assert [e.id for e in examples] == [f"{name}/test/{i:06d}" for i in range(len(rows))]
    assert {(e.benchmark, e.answer_type) for e in examples} == {(name, load_benchmark(name).spec.answer_type)}


GOLDS = {
    "gsm8k": ["18", "3", "70000"],
    "svamp": ["8", "8", "41"],
    "multiarith": ["39", "8", "9"],
    "asdiv": ["9", "15", "0.5"],  # "9 (apples)": the unit goes
    "math": ["0.5", r"\frac{1}{\sqrt{2}}", "7", r"\{-2,2\}"],  # last \boxed{}, normalised
    "strategyqa": ["yes", "no", "yes"],
    "arc_challenge": ["A", "D", "B"],  # row 2 labels its choices "1".."4": answerKey "4" is D
    "arc_easy": ["C", "A"],
    "commonsense_qa": ["A", "A", "D"],
}


@pytest.mark.parametrize("name", SHIPPED)
def test_gold_answers(name):
    assert [e.gold for e in local(name)] == GOLDS[name]


def test_questions_are_built_as_the_benchmark_says():
    svamp = local("svamp")[0]
    assert svamp.question == "Mary had 14 apples in her basket. She gave 6 apples to her brother. How many apples does Mary have now?"
    arc = local("arc_challenge")
    assert arc[1].question.endswith("\nAnswer Choices: (A) chemical (B) light (C) electrical (D) sound")
    assert [e.choices for e in arc] == [tuple("ABCD"), tuple("ABCD"), tuple("ABCDE")]
    assert local("arc_easy")[1].choices == tuple("ABC")


def test_scoring_uses_each_rows_answer_type_and_choices():
    csqa = local("commonsense_qa")[2]
    assert score("People drink when thirsty. The answer is (D).", csqa).correct
    assert not score("Because thirst... The answer is E.", local("arc_easy")[1]).correct  # E is no choice there
    assert score("Honey comes from bees. So the answer is Yes.", local("strategyqa")[2]).correct
    assert score(r"Each half is a quarter... The answer is $\boxed{\dfrac{1}{2}}$.", local("math")[0]).correct
    assert score("Mary gave 6 of 14 apples away: 14 - 6 = 8. The answer is 8.", local("svamp")[0]).correct


# --- the config ----------------------------------------------------------------------------


def test_a_benchmark_by_name_brings_its_source_split_and_prompt():
    config = parse_config({"dataset": {"benchmark": "arc_challenge"}}, needs=())
    ds = config.dataset
    assert (ds.source, ds.config, ds.split, ds.name, ds.is_local) == ("allenai/ai2_arc", "ARC-Challenge", "test", "arc_challenge", False)
    assert config.prompt == "arc_cot_4shot"
    assert parse_config({"dataset": {"benchmark": "math"}}, needs=()).prompt == "benchmark:math"
    assert load_template("benchmark:math").name == "math_cot_5shot"
    csqa = parse_config({"dataset": {"benchmark": "commonsense_qa"}}, needs=()).dataset
    assert (csqa.split, csqa.config) == ("validation", None)


def test_the_config_may_replace_the_source_and_the_prompt():
    config = parse_config({"dataset": {"benchmark": "svamp", "source": str(FIXTURES / "svamp.jsonl"), "split": "test"},
                           "prompt": "demo"}, needs=())
    assert (config.dataset.name, config.dataset.split, config.dataset.is_local, config.prompt) == ("svamp", "test", True, "demo")
    legacy = parse_config({"dataset": {"source": "openai/gsm8k", "config": "main"}}, needs=())
    assert legacy.prompt == "gsm8k_cot_8shot" and legacy.dataset.benchmark is None


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        DatasetSpec(benchmark="arc_challenje")
    assert str(err.value) == f"unknown benchmark 'arc_challenje' (known: {', '.join(SHIPPED)}; or a YAML path)"


def test_a_benchmark_names_its_own_fields():
    with pytest.raises(UserError, match="dataset.answer_format cannot be set with dataset.benchmark"):
        DatasetSpec(benchmark="svamp", answer_format="plain")


def _user_benchmark(tmp_path, **changes) -> str:
    raw = yaml.safe_load((BENCHMARK_DIR / "svamp.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "my_bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_a_user_benchmark_is_a_yaml_file(tmp_path):
    path = _user_benchmark(tmp_path, fields={"question": "Question", "answer": "Answer"})
    examples = load_examples(DatasetSpec(str(FIXTURES / "svamp.jsonl"), benchmark=path, split="test"))
    assert [(e.id, e.question, e.gold) for e in examples][0] == ("my_bench/test/000000", "How many apples does Mary have now?", "8")


def test_unknown_answer_type_in_a_benchmark_file(tmp_path):
    path = _user_benchmark(tmp_path, answer_type="essay")
    with pytest.raises(UserError, match="unknown answer_type 'essay' \\(known: number, yes_no, choice, math\\)"):
        DatasetSpec(benchmark=path)


# --- bad rows and Parquet --------------------------------------------------------------------


def test_a_bad_jsonl_row_names_its_line(tmp_path):
    lines = (FIXTURES / "arc_easy.jsonl").read_text().splitlines()
    bad = json.loads(lines[0]) | {"answerKey": "Z"}
    path = tmp_path / "arc.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), lines[1]]) + "\n")
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(path), benchmark="arc_easy", split="test"))
    assert "'answerKey' is not one of the choice labels A, B, C, D (line 2)" in str(err.value)


def test_parquet_files_load_and_bad_rows_are_numbered(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "svamp.jsonl").read_text().splitlines()]
    good = tmp_path / "svamp.parquet"
    pq.write_table(pa.Table.from_pylist(rows), good)
    examples = load_examples(DatasetSpec(str(good), benchmark="svamp", split="test"))
    assert [e.gold for e in examples] == ["8", "8", "41"]

    rows[2]["Answer"] = None
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    with pytest.raises(UserError) as err:
        load_examples(DatasetSpec(str(bad), benchmark="svamp", split="test"))
    assert str(err.value) == f"{bad}: 1 bad row (counted from 0): missing field 'Answer' (row 2)"


def test_parquet_without_a_benchmarks_field(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"question": ["q"]}), path)
    with pytest.raises(UserError, match="no field\\(s\\) 'Body', 'Question', 'Answer'"):
        load_examples(DatasetSpec(str(path), benchmark="svamp", split="test"))
