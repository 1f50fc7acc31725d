"""The bad-input battery: every job, given a mistake a user makes, stops with exactly one
line `error: ...` on stderr, exit status 2, no traceback, and leaves nothing that blocks the
corrected rerun. The jobs run in this process (their `main`, as `python -m jobs.NAME`
runs it); none of these mistakes may get as far as starting Ray, which the battery
enforces by making that step fail loudly."""
from __future__ import annotations

import importlib
import json
import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import hub
from pipeline.cli import run_main

REPO = Path(__file__).resolve().parents[1]
DEMO_ARTIFACT = str(REPO / "artifacts" / "alpha-demo-v2")
ROW = {"question": "What is 1 plus 1?", "answer": "1+1=2\n#### 2"}


class ReachedRay(AssertionError):
    pass


@pytest.fixture(scope="module")
def world(tiny_pair, tmp_path_factory):
    """Files the cases point at: a good config and dataset, a label set, an artifact, a results set."""
    root = tmp_path_factory.mktemp("battery")
    (root / "test.jsonl").write_text(json.dumps(ROW) + "\n")
    base = {"student": {"path": str(tiny_pair[0])}, "teacher": {"path": str(tiny_pair[1])},
            "dataset": {"source": str(root / "test.jsonl")}, "decoding": {"max_new_tokens": 4},
            "strategies": [{"name": "student"}]}
    labels = root / "labels"
    labels.mkdir()
    pq.write_table(pa.table({"example_id": ["x/test/0"], "correct": [[True]]}), labels / "part-0.parquet")
    results = root / "results"
    results.mkdir()
    pq.write_table(pa.table({"example_id": ["x/test/0"], "generated_text": ["2"]}), results / "part-0.parquet")
    (root / "ok.yaml").write_text(yaml.safe_dump(base))
    other = root / "unrelated"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    return {"root": root, "base": base, "labels": labels, "results": results, "unrelated": other, "tiny": tiny_pair}


def changed(base: dict, section: str, **fields) -> dict:
    out = json.loads(json.dumps(base))
    if isinstance(out.get(section), dict) and fields:
        out[section].update(fields)
    return out


def config_file(w, name: str, raw) -> str:
    path = w["root"] / f"{name}.yaml"
    if isinstance(raw, str) and raw.startswith("\x00"):
        path.write_bytes(raw.encode("latin-1"))
    else:
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return str(path)


def _latin1(w, name: str) -> str:
    path = w["root"] / f"{name}.yaml"
    path.write_bytes(yaml.safe_dump(w["base"]).encode() + "# caf\u00e9\n".encode("latin-1"))
    return str(path)


def data_file(w, name: str, text: str) -> str:
    path = w["root"] / name
    path.write_text(text)
    return str(path)


def deep(levels: int = 100_000) -> str:
    """A JSON value nested deeper than Python's parser recurses."""
    return "[" * levels + "]" * levels


def chat_file(name: str, content: bytes, *sets: str):
    """A chat prompt whose prompt.chat_template is a file of `content` in the world."""
    def make(w, case):
        path = w["root"] / name
        path.write_bytes(content)
        return overrides("prompt.chat=true", f"prompt.chat_template={path}", *sets)(w, case)
    return make


def plugin(module: str, code: str, *sets: str):
    """An evaluate case whose overrides name `module`, written (with `code`) to the world's
    plugins folder, which CASE_PATH puts on sys.path."""
    def make(w, case):
        folder = w["root"] / "plugins"
        folder.mkdir(exist_ok=True)
        (folder / f"{module}.py").write_text(code)
        return overrides(*sets)(w, case)
    return make


def evaluate(raw_of):
    """An evaluate case: the config `raw_of(world)` into a fresh --out."""
    return lambda w, name: ("jobs.evaluate", ["--config", config_file(w, name, raw_of(w)), "--out", str(w["root"] / f"out-{name}")])


def label(raw_of, *extra):
    return lambda w, name: ("jobs.label_alpha", ["--config", config_file(w, name, raw_of(w)), "--out", str(w["root"] / f"out-{name}"), *extra])


def strategies(*entries):
    return evaluate(lambda w: {**w["base"], "strategies": list(entries)})


def dataset(**fields):
    return evaluate(lambda w: changed(w["base"], "dataset", **fields))


def rows(name: str, text: str, **fields):
    return evaluate(lambda w: changed(w["base"], "dataset", source=data_file(w, name, text), **fields))


def section(name: str, **fields):
    return evaluate(lambda w: {**w["base"], name: fields} if name not in w["base"] else changed(w["base"], name, **fields))


def overrides(*sets):
    return lambda w, name: ("jobs.evaluate", ["--config", config_file(w, name, w["base"]), "--out", str(w["root"] / f"out-{name}"),
                                              *[a for s in sets for a in ("--set", s)]])


def command(job: str, *args):
    """A case whose arguments are paths in the world: '{root}', '{labels}', ... are filled in."""
    return lambda w, name: (job, [a.format(name=name, artifact=DEMO_ARTIFACT, **{k: str(v) for k, v in w.items() if not isinstance(v, (dict, tuple))})
                                  for a in args])


SIGNALS = {"n": 4, "student_accuracy": 0.5, "teacher_accuracy": 1.0, "auc_self_consistency_vs_student_correct": 0.5}


def reportable(w, name: str, files: dict[str, str] | None = None) -> str:
    """A run directory the report can read (a signals run), with `files` (name -> text) beside."""
    run = w["root"] / f"run-{name}"
    run.mkdir(exist_ok=True)
    (run / "signals_summary.json").write_text(json.dumps(SIGNALS))
    for file, text in (files or {}).items():
        (run / file).write_text(text)
    return str(run)


# a user's own folders shaped like this project's outputs (relative path -> text): only the
# marker makes a folder a run's or a report's, so each must be refused and kept as it is
USERS_FOLDERS = {
    "out_holds_a_users_manifest": {"manifest.json": json.dumps({"job": "evaluate", "mine": True}), "results/my-results.csv": "a,b\n1,2\n"},
    "labels_out_holds_a_users_manifest": {"labels_manifest.json": json.dumps({"job": "label_alpha"}), "notes.txt": "mine"},
    "report_out_is_a_users_folder_like_a_report": {"report.html": "<p>mine</p>", "report.md": "# mine",
                                                   "data/my-measurements.csv": "x\n1\n", "plots/my-figure.png": "png"},
}


def users_folder(w, name: str, files: dict[str, str]) -> str:
    folder = w["root"] / f"users-{name}"
    for file, text in files.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_text(text)
    return str(folder)


def into_users_folder(job: str, case: str):
    """`job` run with --out a user's folder of USERS_FOLDERS[case]."""
    def make(w, name: str):
        out = users_folder(w, name, USERS_FOLDERS[case])
        if job == "jobs.report":
            return job, [reportable(w, name), "--out", out]
        return job, ["--config", str(w["root"] / "ok.yaml"), "--out", out]
    return make


CASES = {
    # config files and overrides
    "config_file_missing": (command("jobs.evaluate", "--config", "{root}/nope.yaml", "--out", "{root}/out-{name}"), "config file not found"),
    "bad_yaml": (evaluate(lambda w: "student: [unclosed\n"), "invalid YAML"),
    "top_level_list": (evaluate(lambda w: "- a\n- b\n"), "top level must be a mapping"),
    "unknown_key": (evaluate(lambda w: {**w["base"], "bogus": 1}), "unknown key"),
    "unknown_field_in_section": (section("decoding", max_new_tokens=4, beam_size=4), "beam_size"),
    "section_not_a_mapping": (evaluate(lambda w: {**w["base"], "student": "path/to/model"}), "must be a mapping"),
    "chat_without_a_template": (overrides("prompt.chat=true"), "has no chat template: set prompt.chat_template"),
    "chat_template_file_missing": (overrides("prompt.chat=true", "prompt.chat_template=nope.jinja"), "prompt.chat_template: file not found"),
    "chat_template_not_utf8": (chat_file("latin1.jinja", "{{ messages[0]['content'] }} caf\u00e9".encode("latin-1")), "latin1.jinja: not UTF-8 text"),
    "chat_template_a_hostname_file": (chat_file("hostname", b"build-host-7\n"), "renders every question alike"),
    "chat_template_ignores_messages": (overrides("prompt.chat=true", "prompt.chat_template='{% if add_generation_prompt %}A:{% endif %}'"),
                                       "renders every question alike"),
    "prompt_not_a_name_or_mapping": (overrides("prompt=[1]"), "'prompt' must name a template or be a mapping"),
    "override_without_equals": (overrides("decoding.max_new_tokens"), "must look like key.sub=value"),
    "override_into_a_value": (overrides("decoding.max_new_tokens.x=1"), "is not a mapping"),
    "override_bad_yaml_value": (overrides("decoding.max_new_tokens=[1"), "the value: invalid YAML"),
    "override_alias_to_itself": (overrides("strategies=&a [*a]"), "a YAML alias refers to the value that contains it"),
    "config_binary": (evaluate(lambda w: "\x00\xff\xfe binary"), "not UTF-8 text"),
    "config_latin1": (lambda w, name: ("jobs.evaluate", ["--config", _latin1(w, name), "--out", str(w["root"] / f"out-{name}")]), "not UTF-8 text"),
    "config_nested_deeply": (evaluate(lambda w: "a: " + "[" * 5000 + "]" * 5000 + "\n"), "nested more than"),
    "config_duplicate_key": (evaluate(lambda w: yaml.safe_dump(w["base"]) + "decoding: {max_new_tokens: 8}\n"), "duplicate key 'decoding'"),
    "model_path_not_text": (evaluate(lambda w: changed(w["base"], "student", path=123)), "student.path"),
    "num_cpus_nan": (section("ray", student={"num_cpus": float("nan")}), "num_cpus"),
    "resources_a_list": (section("ray", student={"resources": [1, 2]}), "resources"),
    "placement_timeout_words": (section("ray", placement_timeout_s="soon"), "placement_timeout_s"),
    "missing_section_for_evaluate": (evaluate(lambda w: {k: v for k, v in w["base"].items() if k != "strategies"}), "needs the section(s) ['strategies']"),
    "missing_teacher_for_labels": (label(lambda w: {k: v for k, v in w["base"].items() if k != "teacher"}), "needs the section(s) ['teacher']"),
    # output locations: only new, empty or this project's own directories
    "out_empty": (command("jobs.evaluate", "--config", "{root}/ok.yaml", "--out", ""), "--out is empty"),
    "out_is_a_shipped_artifact": (command("jobs.evaluate", "--config", "{root}/ok.yaml", "--out", "{artifact}"), "holds files no job of this project wrote"),
    "out_is_someones_folder": (command("jobs.label_alpha", "--config", "{root}/ok.yaml", "--out", "{unrelated}"), "holds files no job of this project wrote (keep.txt"),
    "out_in_memory_filesystem": (command("jobs.evaluate", "--config", "{root}/ok.yaml", "--out", "mock:///run"), "does not keep what is written"),
    "out_unknown_scheme": (command("jobs.evaluate", "--config", "{root}/ok.yaml", "--out", "foo://bar"), "not a path or a filesystem URI"),
    "artifact_out_empty": (command("jobs.train_predictor", "--labels", "{labels}", "--out", " "), "--out is empty"),
    # models
    "missing_model": (evaluate(lambda w: changed(w["base"], "student", path=str(w["root"] / "no-such-model"))), "model not found"),
    "typo_in_relative_model_path": (evaluate(lambda w: changed(w["base"], "student", path="tests/no-such-model")), "model not found"),
    "model_dir_without_weights": (evaluate(lambda w: changed(w["base"], "teacher", path=str(w["root"]))), "cannot load"),
    "unknown_dtype": (evaluate(lambda w: changed(w["base"], "student", dtype="int4")), "'student.dtype' must be one of 'auto', 'float32', 'bfloat16' or 'float16', got 'int4'"),
    "empty_model_path": (evaluate(lambda w: changed(w["base"], "student", path="")), "model path is empty"),
    "incompatible_tokenizers": (evaluate(lambda w: changed(w["base"], "teacher", path=str(REPO / "demo_world" / "teacher"))), "incompatible tokenizers"),
    "hub_model_offline": (evaluate(lambda w: changed(w["base"], "student", path="someone/not-cached")), "not in the local cache"),
    # datasets
    "dataset_missing": (dataset(source="/nonexistent/test.jsonl"), "dataset file not found"),
    "dataset_is_a_directory": (evaluate(lambda w: changed(w["base"], "dataset", source=str(w["root"]), split="test")), "is a directory"),
    "dataset_is_a_device": (dataset(source="/dev/zero", split="test", name="zero"), "not a regular file"),
    "dataset_line_too_long": (rows("long.jsonl", json.dumps({**ROW, "question": "x" * 300}) + "\n", split="test", max_row_bytes=100),
                              "line 1 is longer than dataset.max_row_bytes (100 bytes)"),
    "max_row_bytes_zero": (dataset(max_row_bytes=0), "'dataset.max_row_bytes' must be ≥ 1, got 0"),
    "malformed_row": (rows("bad.jsonl", json.dumps(ROW) + "\n{oops\n", split="test"), "line 2"),
    "json_array_of_numbers": (rows("arr.jsonl", json.dumps([1, 2]) + "\n", split="test"), "2 bad rows (counted from 0): not a JSON object"),
    "json_object_without_rows": (rows("obj.json", json.dumps({"name": "x", "n": 3}, indent=1), split="test"), "a JSON object without a list of rows under any key (keys: name, n)"),
    "neither_json_nor_table": (rows("words.txt", "just some words\n", split="test"), "not a dataset file this job reads"),
    "empty_dataset": (rows("empty.jsonl", "", split="test"), "empty"),
    "json_nested_deeply": (rows("deep.json", deep(), split="test"), "deep.json: JSON nested too deeply to read"),
    "json_object_nested_deeply": (rows("deep-object.json", '{"examples": ' + deep() + "}", split="test"), "JSON nested too deeply to read"),
    "jsonl_row_nested_deeply": (rows("deep.jsonl", json.dumps(ROW) + '\n{"question": ' + deep() + ', "answer": "#### 1"}\n', split="test"),
                                "1 bad line: JSON nested too deeply to read (line 2)"),
    "first_jsonl_row_nested_deeply": (rows("deep-first.jsonl", '{"question": ' + deep() + ', "answer": "#### 1"}\n' + json.dumps(ROW) + "\n", split="test"),
                                      "1 bad line: JSON nested too deeply to read (line 1)"),
    "empty_question": (rows("blank.jsonl", json.dumps(ROW) + "\n" + json.dumps({**ROW, "question": " \n\t"}) + "\n", split="test"),
                       "1 bad line: field 'question' is empty (line 2)"),
    "empty_question_in_an_array": (rows("blank.json", json.dumps([ROW, ROW, {**ROW, "question": ""}]), split="test"),
                                   "1 bad row (counted from 0): field 'question' is empty (row 2)"),
    "missing_question_field": (rows("noq.jsonl", json.dumps({"answer": "#### 1"}) + "\n", split="test"), "no field(s) 'question' (fields: answer); map this copy's fields, e.g. --set dataset.fields.question=<field>"),
    "answer_without_marker": (rows("nomark.jsonl", json.dumps({"question": "q", "answer": "2"}) + "\n", split="test"), "no '#### '"),
    "plain_answer_not_a_number": (rows("words.jsonl", json.dumps({"question": "q", "answer": "two"}) + "\n", split="test", answer_format="plain"), "not a number"),
    "missing_group_field": (dataset(group_field="family"), "no field(s) 'family'"),
    "unknown_answer_format": (dataset(answer_format="mcq"), "'dataset.answer_format' must be one of 'gsm8k' or 'plain', got 'mcq'"),
    "limit_zero": (dataset(limit=0), "'dataset.limit' must be ≥ 1, got 0"),
    "offset_past_the_end": (dataset(offset=5), "empty after offset"),
    "split_not_named": (rows("rows.jsonl", json.dumps(ROW) + "\n"), "split is required"),
    "split_contradicts_file": (dataset(split="train"), "named for the 'test' split"),
    "split_not_a_string": (dataset(split=2024), "'dataset.split' must be a string, got 2024"),
    "name_not_derivable": (lambda w, name: ("jobs.evaluate", ["--config", config_file(w, name, changed(w["base"], "dataset", source="test.jsonl")),
                                                              "--out", str(w["root"] / f"out-{name}")]), "dataset.name is required"),
    "dataset_name_all_digits": (dataset(name="01"), "dataset.name '01' cannot name a dataset"),
    "dataset_name_with_slash": (dataset(name="a/b"), "dataset.name 'a/b' cannot name a dataset"),
    "hub_dataset_unreachable": (dataset(source="someone/some-dataset", split="test"), "the Hub is unreachable from this machine"),
    "dataset_and_datasets": (evaluate(lambda w: {**w["base"], "datasets": [w["base"]["dataset"]]}), "not both"),
    "datasets_same_name": (evaluate(lambda w: {**{k: v for k, v in w["base"].items() if k != "dataset"},
                                               "datasets": [w["base"]["dataset"]] * 2}), "has two entries named"),
    "datasets_not_a_list": (evaluate(lambda w: {**{k: v for k, v in w["base"].items() if k != "dataset"},
                                                "datasets": w["base"]["dataset"]}), "'datasets' must be a non-empty list"),
    "datasets_for_labels": (label(lambda w: {**{k: v for k, v in w["base"].items() if k != "dataset"},
                                             "datasets": [w["base"]["dataset"]]}), "this job reads one dataset"),
    # decoding and strategies
    "negative_max_new_tokens": (section("decoding", max_new_tokens=-1), "'decoding.max_new_tokens' must be ≥ 1, got -1"),
    "batch_size_zero": (section("decoding", max_new_tokens=4, batch_size=0), "batch_size"),
    "bool_as_string": (section("decoding", max_new_tokens=4, reuse_preamble_cache="maybe"), "reuse_preamble_cache"),
    "budget_beyond_context": (section("decoding", max_new_tokens=9000), "does not fit the context"),
    "stop_id_negative": (section("decoding", max_new_tokens=4, stop_token_ids=[-1]), "stop_token_ids"),
    "stop_id_beyond_vocab": (section("decoding", max_new_tokens=4, stop_token_ids=[10**6]), "not in the shared vocabulary"),
    "question_beyond_context": (rows("longq.jsonl", json.dumps({**ROW, "question": "one plus one " * 600}) + "\n", split="test"), "need"),
    "alpha_huge": (strategies({"name": "fixed_alpha", "alpha": 1e308, "n_tokens": 1}), "alpha must lie in [-100, 100]"),
    "cot_k_huge": (strategies({"name": "cot_decoding", "k": 10**9}), "k must be ≤ 256"),
    "students_astronomical": (section("ray", num_students=10**30), "'ray.num_students' must be ≤ 4096"),
    "unknown_prompt_template": (evaluate(lambda w: {**w["base"], "prompt": "no_such_template"}), "prompt template 'no_such_template' not found"),
    "unknown_strategy": (strategies({"name": "beam_search"}), "beam_search"),
    "strategy_relative_module": (strategies({"name": ".evil:foo"}), "strategies '.evil:foo': '.evil' is not a module name"),
    "strategy_module_raises_on_import": (plugin("raising_plugin_36", "raise RuntimeError('no GPU here')\n", "strategies=[{name: 'raising_plugin_36:foo'}]"),
                                         "strategies 'raising_plugin_36:foo': cannot import raising_plugin_36: RuntimeError: no GPU here"),
    "backend_relative_module": (overrides("student.backend=..x:engine"), "'..x' is not a module name"),
    "backend_module_broken": (plugin("broken_backend_36", "def engine(:\n", "teacher.backend=broken_backend_36:engine"),
                              "teacher.backend 'broken_backend_36:engine': cannot import broken_backend_36: SyntaxError"),
    "strategy_without_name": (strategies({"alpha": 1.0}), "must be a mapping with a 'name'"),
    "strategies_not_a_list": (evaluate(lambda w: {**w["base"], "strategies": "student"}), "non-empty list"),
    "negative_n": (strategies({"name": "fixed_alpha", "alpha": 1.0, "n_tokens": -1}), "n_tokens must be ≥ 0, got -1"),
    "non_numeric_alpha": (strategies({"name": "fixed_alpha", "alpha": "high", "n_tokens": 2}), "alpha must be a finite number, got 'high'"),
    "infinite_alpha": (strategies({"name": "fixed_alpha", "alpha": float("inf"), "n_tokens": 1}), "alpha must be a finite number, got inf"),
    "unknown_strategy_parameter": (strategies({"name": "fixed_alpha", "alpha": 1.0, "temperature": 2}), "temperature"),
    "alpha_1_and_1.0": (strategies({"name": "fixed_alpha", "alpha": 1, "n_tokens": 2}, {"name": "fixed_alpha", "alpha": 1.0, "n_tokens": 2}), "duplicate strategies"),
    "gate_band_reversed": (strategies({"name": "entropy_gate", "alpha": 1.0, "n_tokens": 1, "lo": 2.0, "hi": 1.0}), "lo (2.0) must not exceed hi (1.0)"),
    "gate_artifact_and_band": (strategies({"name": "entropy_gate", "artifact": DEMO_ARTIFACT, "lo": 0.5, "hi": 10.0}),
                               "an artifact sets α, N and the band it calibrated: give lo, hi or the artifact, not both"),
    "gate_artifact_and_default_lo": (strategies({"name": "entropy_gate", "artifact": DEMO_ARTIFACT, "lo": 0.0}), "give lo or the artifact, not both"),
    "switch_nan": (strategies({"name": "switch", "tau0": float("nan")}), "tau0 must be a finite number, got nan"),
    "switch_negative_lambda": (strategies({"name": "switch", "tau0": 0.1, "lam": -1.0}), "lam must be ≥ 0, got -1.0"),
    "predicted_alpha_without_artifact": (strategies({"name": "predicted_alpha"}), "artifact"),
    "artifact_missing": (strategies({"name": "predicted_alpha", "artifact": "/nonexistent/artifact"}), "not an α-predictor artifact"),
    "artifact_for_another_student": (strategies({"name": "predicted_alpha", "artifact": DEMO_ARTIFACT}), "was built for student"),
    "gate_artifact_for_another_student": (strategies({"name": "entropy_gate", "artifact": DEMO_ARTIFACT}), "was calibrated for student"),
    # ray resources
    "zero_students": (section("ray", num_students=0), "num_students"),
    "zero_students_per_teacher": (section("ray", students_per_teacher=0), "students_per_teacher"),
    "negative_gpus": (section("ray", student={"num_gpus": -1}), "num_gpus"),
    # labels
    "feature_layer_out_of_range": (label(lambda w: {**w["base"], "labels": {"feature_layers": [7]}}), "out of range"),
    "alpha_grid_with_text": (label(lambda w: {**w["base"], "labels": {"alpha_grid": [1.0, "x"]}}), "'labels.alpha_grid.1' must be a finite number, got 'x'"),
    "label_n_beyond_budget": (label(lambda w: {**w["base"], "labels": {"n_tokens": 9}}), "larger than decoding.max_new_tokens"),
    # train_predictor
    "labels_missing": (command("jobs.train_predictor", "--labels", "{root}/no-labels", "--out", "{root}/art-{name}"), "no-labels: not found"),
    "labels_lack_columns": (command("jobs.train_predictor", "--labels", "{labels}", "--out", "{root}/art-{name}"), "is not a label dataset"),
    "folds_one": (command("jobs.train_predictor", "--labels", "{labels}", "--out", "{root}/art-{name}", "--folds", "1"), "folds must be ≥ 2, got 1"),
    "artifact_out_exists": (command("jobs.train_predictor", "--labels", "{labels}", "--out", "{unrelated}"), "already exists"),
    "init_from_missing": (command("jobs.train_predictor", "--labels", "{labels}", "--out", "{root}/art-{name}", "--init-from", "{root}/none"), "not an α-predictor artifact"),
    "predictor_config_unknown_field": (lambda w, name: ("jobs.train_predictor", ["--labels", str(w["labels"]), "--out", str(w["root"] / f"art-{name}"),
                                                                                 "--config", config_file(w, name, {"modle": "torch_mlp"})]), "modle"),
    "predictor_cost_negative": (lambda w, name: ("jobs.train_predictor", ["--labels", str(w["labels"]), "--out", str(w["root"] / f"art-{name}"),
                                                                          "--config", config_file(w, name, {"teacher_token_cost": -1})]), "teacher_token_cost"),
    "predictor_policy_unknown": (lambda w, name: ("jobs.train_predictor", ["--labels", str(w["labels"]), "--out", str(w["root"] / f"art-{name}"),
                                                                           "--config", config_file(w, name, {"policy": "best"})]), "policy must be one of"),
    "predictor_select_model_unknown": (lambda w, name: ("jobs.train_predictor", ["--labels", str(w["labels"]), "--out", str(w["root"] / f"art-{name}"),
                                                                                 "--config", config_file(w, name, {"select_models": ["xgb"]})]), "unknown predictor model 'xgb'"),
    "predictor_inner_folds_one": (command("jobs.train_predictor", "--labels", "{labels}", "--out", "{root}/art-{name}", "--inner-folds", "1"), "inner_folds must be ≥ 2, got 1"),
    # report, signals, export
    "report_run_missing": (command("jobs.report", "{root}/no-run"), "run directory not found"),
    "report_nothing_to_report": (command("jobs.report", "{unrelated}"), "nothing to report"),
    "report_out_is_someone_elses": (command("jobs.report", "{artifact}", "--out", "{unrelated}"), "not a report directory"),
    "report_out_is_a_users_folder_like_a_report": (into_users_folder("jobs.report", "report_out_is_a_users_folder_like_a_report"),
                                                   "not a report directory"),
    "report_out_is_the_filesystem_root": (lambda w, name: ("jobs.report", [reportable(w, name), "--out", "/"]), "is the filesystem root"),
    "report_manifest_not_json": (lambda w, name: ("jobs.report", [reportable(w, name, {"manifest.json": '{"job": "evaluate",'})]),
                                 "manifest.json is not JSON"),
    "out_holds_a_users_manifest": (into_users_folder("jobs.evaluate", "out_holds_a_users_manifest"), "holds files no job of this project wrote"),
    "labels_out_holds_a_users_manifest": (into_users_folder("jobs.label_alpha", "labels_out_holds_a_users_manifest"),
                                          "holds files no job of this project wrote"),
    "build_demo_zero_threads": (command("jobs.build_demo", "--threads", "0", "--out", "{root}/no-world"), "--threads must be at least 1"),
    "signals_on_a_labels_dataset": (lambda w, name: ("jobs.score_signals", ["--results", str(w["labels"]), "--config", config_file(w, name, w["base"]),
                                                                            "--out", str(w["root"] / f"out-{name}")]), "is not an evaluation results dataset"),
    "export_input_missing": (lambda w, name: ("jobs.export_distill", ["--input", str(w["root"] / "none"), "--config", config_file(w, name, {"export": {}}),
                                                                       "--out", str(w["root"] / f"out-{name}")]), "none: not found"),
    "export_floor_not_a_number": (lambda w, name: ("jobs.export_distill", ["--input", str(w["results"]), "--config", config_file(w, name, {"export": {"uncertainty_floor": "x"}}),
                                                                           "--out", str(w["root"] / f"out-{name}")]), "'export.uncertainty_floor' must be a finite number"),
    "export_logprob_words": (lambda w, name: ("jobs.export_distill", ["--input", str(w["results"]), "--config", config_file(w, name, {"export": {"min_ta_mean_logprob": "high"}}),
                                                                      "--out", str(w["root"] / f"out-{name}")]), "min_ta_mean_logprob"),
    "export_sources_a_string": (lambda w, name: ("jobs.export_distill", ["--input", str(w["results"]), "--config", config_file(w, name, {"export": {"sources": "teacher"}}),
                                                                         "--out", str(w["root"] / f"out-{name}")]), "'export.sources' must be a list"),
    "signals_k_huge": (evaluate(lambda w: {**w["base"], "signals": {"k": 10**9}}), "'signals.k' must be ≤ 256, got 1000000000"),
    "build_demo_negative_seed": (command("jobs.build_demo", "--seed", "-1", "--out", "{root}/no-world"), "--seed must be an integer from 0"),
    "build_demo_into_someones_folder": (command("jobs.build_demo", "--out", "{unrelated}"), "is not a demo world"),
    "build_demo_check_without_world": (command("jobs.build_demo", "--check", "--out", "{root}/no-world"), "world.json not found"),
}


CASE_ENV = {
    "hub_model_offline": {"HF_HUB_OFFLINE": "1"},
    "hub_dataset_unreachable": {"HF_ENDPOINT": "http://127.0.0.1:9"},  # nothing listens: unreachable anywhere
}
CASE_PATH = {"strategy_module_raises_on_import": "plugins", "backend_module_broken": "plugins"}  # a folder of the world on sys.path


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_clear_line(world, case, capsys, monkeypatch):
    import pipeline.runtime.cluster as cluster

    def reached_ray() -> None:
        raise ReachedRay(f"case {case} got as far as starting Ray: it was not refused")

    monkeypatch.setattr(cluster.ray, "init", lambda *a, **k: reached_ray())
    for key, value in CASE_ENV.get(case, {}).items():
        monkeypatch.setenv(key, value)
    hub.hub_reachable.cache_clear()
    make, message = CASES[case]
    job, argv = make(world, case)
    if case in CASE_PATH:
        monkeypatch.syspath_prepend(str(world["root"] / CASE_PATH[case]))
    with pytest.raises(SystemExit) as done:
        run_main(importlib.import_module(job).main, argv)
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    out = world["root"] / f"out-{case}"
    assert not list(out.glob("*manifest.json")) and not (out / ".run.lock").exists()  # nothing blocks the rerun
    assert (world["unrelated"] / "keep.txt").read_text() == "mine"  # nothing of someone else's touched


def test_a_named_pipe_as_the_dataset_is_refused_not_opened(world, tmp_path, capsys, monkeypatch):
    """Opening a FIFO for reading blocks until something opens it for writing, so its type is
    checked first. The job runs in a thread, as the battery runs it; a job still blocked after a
    minute fails the test, and is let go (the FIFO opened for writing and closed)."""
    import pipeline.runtime.cluster as cluster

    def reached_ray(*args, **kwargs) -> None:
        raise ReachedRay("a FIFO as dataset.source got as far as starting Ray")

    monkeypatch.setattr(cluster.ray, "init", reached_ray)
    fifo = tmp_path / "test.jsonl"
    os.mkfifo(fifo)
    config = tmp_path / "fifo.yaml"
    config.write_text(yaml.safe_dump(changed(world["base"], "dataset", source=str(fifo))))
    codes: list = []

    def job() -> None:
        try:
            run_main(importlib.import_module("jobs.evaluate").main, ["--config", str(config), "--out", str(tmp_path / "out")])
        except SystemExit as done:
            codes.append(done.code)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked open returns
        thread.join(60)
        pytest.fail("a FIFO as dataset.source blocked the job")
    err = capsys.readouterr().err
    assert codes == [2] and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: dataset path is not a regular file (a device, pipe or socket): {fifo}"], err
    assert not (tmp_path / "out").exists()


def refused_in_one_line(job: str, argv: list[str], capsys, message: str) -> None:
    with pytest.raises(SystemExit) as done:
        run_main(importlib.import_module(job).main, argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err


@pytest.mark.parametrize("case", sorted(USERS_FOLDERS))
def test_a_users_folder_shaped_like_an_output_is_left_as_it_was(world, case, capsys, monkeypatch):
    """A manifest with a "job" key, or report.html and report.md beside data/ and plots/, do not
    make a folder this project's: only its marker does. Every file stays as the user left it,
    and no marker is added."""
    import pipeline.runtime.cluster as cluster

    def reached_ray(*args, **kwargs):
        raise ReachedRay(f"case {case} got as far as starting Ray: the user's folder was taken")

    monkeypatch.setattr(cluster.ray, "init", reached_ray)
    make, message = CASES[case]
    job, argv = make(world, f"{case}-kept")
    refused_in_one_line(job, argv, capsys, message)
    folder = world["root"] / f"users-{case}-kept"
    assert {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()} == USERS_FOLDERS[case]


def test_report_out_root_is_refused_without_walking_the_filesystem(world, capsys, monkeypatch):
    def walked(*args, **kwargs):
        raise AssertionError(f"the report walked a directory tree: {args[:1]}")

    monkeypatch.setattr(Path, "rglob", walked)
    monkeypatch.setattr(os, "walk", walked)
    refused_in_one_line("jobs.report", [reportable(world, "root-unwalked"), "--out", "/"], capsys,
                        "report --out / is the filesystem root")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing may be written into: mode 0o555 and, where the tests run as root
    (whom a mode does not stop), the immutable attribute too (`chattr +i`); skipped where
    neither holds."""
    import subprocess

    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0
    except FileNotFoundError:  # no chattr
        immutable = False
    try:
        try:
            (ro / "probe").mkdir()
        except OSError:
            yield ro
        else:
            (ro / "probe").rmdir()
            pytest.skip("cannot make a directory read-only here (root, and chattr +i refused)")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o755)


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_report_out_read_only_is_refused_before_the_report_is_built(world, read_only_dir, where, capsys, monkeypatch):
    """A location the report cannot write (a new folder in it, or the empty folder itself) is
    found by a probe before a plot is drawn, and refused in one line."""
    import pipeline.report.page as page

    def built(runs):
        pytest.fail("the report was built before --out was probed")

    monkeypatch.setattr(page, "build_sections", built)
    out = read_only_dir / "report" if where == "inside" else read_only_dir
    refused_in_one_line("jobs.report", [reportable(world, f"read-only-{where}"), "--out", str(out)], capsys,
                        f"cannot write report --out {out}")
    assert list(read_only_dir.iterdir()) == []
