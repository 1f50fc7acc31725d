"""Benchmarks read from the copies users have: any container (told from the content, not the
name) and fields mapped with `dataset.fields`, the benchmark's prompt and answer type kept."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config.run import apply_override, parse_config
from pipeline.data.datasets import load_examples
from pipeline.errors import UserError

SVAMP = [{"input": f"Jack had {i + 3} apples. He ate 2. How many are left?", "target": float(i + 1)} for i in range(4)]
MULTIARITH = [{"iIndex": i, "sQuestion": f"Tom has {i} pens and buys 3. How many pens?", "lEquations": [f"X=({i}+3)"],
               "lSolutions": [float(i + 3)]} for i in range(3)]
BIG_BENCH = {"name": "strategyqa", "description": "implicit reasoning", "metrics": ["multiple_choice_grade"],
             "examples": [{"input": "Could a goldfish survive in the Dead Sea?", "target_scores": {"Yes": 0, "No": 1},
                           "target": "No. The Dead Sea is too salty."},
                          {"input": "Is the Eiffel Tower taller than a giraffe?", "target_scores": {"Yes": 1, "No": 0},
                           "target": "Yes. It is 330 m tall."}]}


def _load(*sets: str, capsys=None):
    raw: dict = {}
    for line in sets:
        apply_override(raw, line)
    examples = load_examples(parse_config(raw, needs=("dataset",)).dataset)
    said = capsys.readouterr().out if capsys is not None else ""
    return examples, said


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_svamp_copy_with_input_and_target_maps_in_two_lines(tmp_path, capsys):
    path = _jsonl(tmp_path / "svamp.jsonl", SVAMP)
    with pytest.raises(UserError) as err:
        _load("dataset.benchmark=svamp", f"dataset.source={path}", "dataset.split=test")
    assert str(err.value) == (f"{path}: no field(s) 'Body', 'Question', 'Answer' (fields: input, target); map this copy's "
                              "fields, e.g. --set dataset.fields.question=input --set dataset.fields.answer=target")
    examples, said = _load("dataset.benchmark=svamp", f"dataset.source={path}", "dataset.split=test",
                           "dataset.fields.question=input", "dataset.fields.answer=target", capsys=capsys)
    assert [e.gold for e in examples] == ["1", "2", "3", "4"]
    assert examples[0].question == SVAMP[0]["input"]
    assert (examples[0].benchmark, examples[0].answer_type, examples[0].id) == ("svamp", "number", "svamp/test/000000")
    assert f"dataset {path}: JSON Lines, 4 rows" in said


def test_multiarith_json_array_reads_as_it_is(tmp_path, capsys):
    path = tmp_path / "MultiArith.json"
    path.write_text(json.dumps(MULTIARITH, indent=2))
    with pytest.raises(UserError, match="--set dataset.fields.question=sQuestion --set dataset.fields.answer=lSolutions$"):
        _load("dataset.benchmark=multiarith", f"dataset.source={path}", "dataset.split=test")
    examples, said = _load("dataset.benchmark=multiarith", f"dataset.source={path}", "dataset.split=test",
                           "dataset.fields.question=sQuestion", "dataset.fields.answer=lSolutions", capsys=capsys)
    assert [e.gold for e in examples] == ["3", "4", "5"]  # lSolutions: [3.0]
    assert f"dataset {path}: a JSON array, 3 rows" in said


@pytest.mark.parametrize("indent", [2, None], ids=["pretty", "one_line"])
def test_big_bench_task_gives_its_answer_from_target_scores(tmp_path, capsys, indent):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(BIG_BENCH, indent=indent))
    with pytest.raises(UserError, match=r"no field\(s\) 'question' .*--set dataset.fields.question=input$"):
        _load("dataset.benchmark=strategyqa", f"dataset.source={path}", "dataset.split=test")
    examples, said = _load("dataset.benchmark=strategyqa", f"dataset.source={path}", "dataset.split=test",
                           "dataset.fields.question=input", capsys=capsys)
    assert [(e.question, e.gold, e.answer_type) for e in examples] == [
        ("Could a goldfish survive in the Dead Sea?", "no", "yes_no"), ("Is the Eiffel Tower taller than a giraffe?", "yes", "yes_no")]
    assert "a BIG-bench task (rows under 'examples'), 2 rows" in said


def test_csv_tsv_and_parquet_are_told_from_content_not_name(tmp_path, capsys):
    (tmp_path / "a.csv").write_text('question,answer\n"Tom has 2, then 3 more. How many?",#### 5\nWhat is 1+1?,#### 2\n')
    (tmp_path / "b.data").write_text("question\tanswer\nWhat is 2+2?\t#### 4\n")
    pq.write_table(pa.Table.from_pylist([{"question": "What is 3+3?", "answer": "#### 6"}]), tmp_path / "c.jsonl")
    got = {}
    for name in ("a.csv", "b.data", "c.jsonl"):
        examples, said = _load(f"dataset.source={tmp_path / name}", "dataset.split=test", "dataset.name=x", capsys=capsys)
        got[name] = ([e.gold for e in examples], said.split(": ", 1)[1].strip())
    assert got == {"a.csv": (["5", "2"], "CSV (','-separated), 2 rows"), "b.data": (["4"], "TSV, 1 rows"),
                   "c.jsonl": (["6"], "Parquet, 1 rows")}
    assert load_examples(parse_config({"dataset": {"source": str(tmp_path / "a.csv"), "split": "test"}}, ("dataset",)).dataset)[0].question \
        == "Tom has 2, then 3 more. How many?"  # a quoted comma stays in the field


def test_fields_take_formats_and_rules_with_or_without_a_benchmark(tmp_path):
    path = _jsonl(tmp_path / "rows.jsonl", [{"story": "Ann has 3 cats.", "ask": "How many cats?", "sol": "3 cats so #### 3"}])
    examples, _ = _load(f"dataset.source={path}", "dataset.split=test", "dataset.name=x",
                        'dataset.fields.question={format: "{story} {ask}"}', 'dataset.fields.answer={field: sol, after: "#### "}')
    assert (examples[0].question, examples[0].gold) == ("Ann has 3 cats. How many cats?", "3")
    with pytest.raises(UserError, match=r"dataset.fields.answer.*exactly one of 'field'"):
        _load(f"dataset.source={path}", "dataset.split=test", "dataset.fields.answer={after: x}")
    with pytest.raises(UserError, match=r"dataset.fields: unknown key\(s\) \['gold'\]"):
        _load(f"dataset.source={path}", "dataset.split=test", "dataset.fields.gold=sol")


def test_a_bad_row_in_an_array_is_numbered_from_zero(tmp_path):
    path = tmp_path / "MultiArith.json"
    path.write_text(json.dumps(MULTIARITH[:2] + [{**MULTIARITH[2], "lSolutions": ["many"]}]))
    with pytest.raises(UserError) as err:
        _load("dataset.benchmark=multiarith", f"dataset.source={path}", "dataset.split=test",
              "dataset.fields.question=sQuestion", "dataset.fields.answer=lSolutions")
    assert str(err.value) == f"{path}: 1 bad row (counted from 0): 'lSolutions' is not a number (row 2)"


def test_a_row_longer_than_the_sniffed_head_and_a_row_holding_a_list_stay_json_lines(tmp_path):
    long = tmp_path / "long.jsonl"
    _jsonl(long, [{"question": "What is 2+2? " + "x" * 100_000, "answer": "#### 4"}])
    assert [e.gold for e in _load(f"dataset.source={long}", "dataset.split=test")[0]] == ["4"]
    chat = tmp_path / "chat.jsonl"  # one row, its fields not yet mapped, holding a list of objects
    _jsonl(chat, [{"messages": [{"role": "user", "content": "hi"}], "target": "1"}])
    with pytest.raises(UserError, match=r"no field\(s\) 'question', 'answer' \(fields: messages, target\)"):
        _load(f"dataset.source={chat}", "dataset.split=test")


def test_csv_header_after_blank_lines_spaces_after_commas_and_records_numbered_where_they_start(tmp_path, capsys):
    path = tmp_path / "q.csv"
    path.write_text('\n\nquestion, answer\n"Tom has 2,\nthen 3 more. How many?", #### 5\nq2, #### 2, extra\n')
    with pytest.raises(UserError) as err:
        _load(f"dataset.source={path}", "dataset.split=test")
    assert str(err.value) == f"{path}: 1 bad line: more values than the header has columns (line 6)"
    path.write_text('\n\nquestion, answer\n"Tom has 2,\nthen 3 more. How many?", #### 5\n')
    examples, _ = _load(f"dataset.source={path}", "dataset.split=test", capsys=capsys)
    assert [(e.question, e.gold) for e in examples] == [("Tom has 2,\nthen 3 more. How many?", "5")]


def test_parquet_reads_only_the_columns_it_needs(tmp_path):
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "What is 3+3?", "answer": "#### 6", "image": b"\0" * 1000}]), path)
    from pipeline.data.containers import read_file_rows

    found = read_file_rows(path, 1 << 20, ("question", "answer"))
    assert found.columns == ("question", "answer", "image") and found.rows == [(0, {"question": "What is 3+3?", "answer": "#### 6"})]


def test_a_run_over_several_datasets_names_the_entry_to_map():
    from pipeline.config import DatasetSpec
    from pipeline.data.field_hints import mapping_hint
    from pipeline.data.rows import RowReader

    reader = RowReader.for_spec(DatasetSpec(benchmark="svamp"))
    assert mapping_hint(reader, ["input", "target"], "datasets.1") == \
        "--set datasets.1.fields.question=input --set datasets.1.fields.answer=target"


def test_answer_format_and_an_answer_rule_are_not_given_together(tmp_path):
    path = _jsonl(tmp_path / "rows.jsonl", [{"question": "q", "sol": "3"}])
    with pytest.raises(UserError, match="dataset.answer_format cannot be set with dataset.fields.answer"):
        _load(f"dataset.source={path}", "dataset.split=test", "dataset.answer_format=plain", "dataset.fields.answer=sol")
