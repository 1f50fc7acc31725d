"""A run over several benchmarks (`datasets:`): one results dataset partitioned by benchmark,
each benchmark encoded with its own template and scored with its own answer type, a summary
row per (benchmark, strategy), resume per benchmark, and the config's refusals."""
import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import ray
import yaml

from pipeline.config import MODEL_AND_DATA, parse_config
from pipeline.config.benchmark_spec import BENCHMARK_DIR
from pipeline.data.answer_types import score
from pipeline.data.datasets import load_examples
from pipeline.data.prompts import load_template, prompt_hash
from pipeline.errors import UserError
from pipeline.store.schemas import RESULT_SCHEMA
from pipeline.tasks.evaluate import format_table, run_evaluation
from test_ray_evaluation import ray_without_gpus  # noqa: F401  (a fixture)
from tiny_models import CHARS

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
STRATEGIES = [{"name": "student"}, {"name": "fixed_alpha", "alpha": 1.0, "n_tokens": 1}]
LABELS = ["student", "fixed_alpha(alpha=1.0,n_tokens=1)"]
BENCHMARKS = ["svamp_stop", "strategyqa"]  # 3 examples each, in batches of 2: 2 parts each


@pytest.fixture(scope="module")
def stopper(tmp_path_factory) -> str:
    """A benchmark file: SVAMP's fields and answer type under a template that stops at any
    character, so its rows end after one token, the other benchmark's do not: the stop
    strings each row obeyed are its own template's. First in the list, it is the workers'
    default template, so a strategyqa unit is decoded only with a template it names itself."""
    raw = yaml.safe_load((BENCHMARK_DIR / "svamp.yaml").read_text())
    raw["prompt"] = {"name": "stop_at_once", "instruction": "Answer.\n\n", "stop_strings": CHARS, "exemplars": []}
    path = tmp_path_factory.mktemp("bench") / "svamp_stop.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def raw_config(tiny_pair, stopper) -> dict:
    return {
        "student": {"path": str(tiny_pair[0])},
        "teacher": {"path": str(tiny_pair[1])},
        "datasets": [{"benchmark": stopper, "source": str(FIXTURES / "svamp.jsonl"), "split": "test"},
                     {"benchmark": "strategyqa", "source": str(FIXTURES / "strategyqa.jsonl"), "split": "test"}],
        "decoding": {"max_new_tokens": 6, "batch_size": 2},
        "strategies": STRATEGIES,
        "ray": {"num_students": 1, "students_per_teacher": 1, "student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}},
    }


def part_mtimes(results: Path) -> dict[str, int]:
    return {p.relative_to(results).as_posix(): p.stat().st_mtime_ns for p in results.rglob("*.parquet")}


@pytest.mark.ray  # runs a job on Ray
def test_two_benchmarks_make_one_partitioned_dataset_and_resume_per_benchmark(ray_without_gpus, tiny_pair, stopper, tmp_path):
    config = parse_config(raw_config(tiny_pair, stopper))
    out = tmp_path / "run"
    summary = run_evaluation(config, str(out))

    results = out / "results"
    assert sorted(part_mtimes(results)) == [f"benchmark={b}/part-b00000{i}.parquet" for b in sorted(BENCHMARKS) for i in (0, 1)]
    for part in results.rglob("*.parquet"):  # the files hold RESULT_SCHEMA; the key is in the path only
        assert pq.read_schema(part).remove_metadata() == RESULT_SCHEMA
    table = pads.dataset(results, partitioning="hive").to_table()
    assert table.column_names == RESULT_SCHEMA.names + ["benchmark"]
    frame = pd.read_parquet(results)
    assert frame.groupby("benchmark", observed=True).size().to_dict() == {b: 3 * len(STRATEGIES) for b in BENCHMARKS}
    assert (frame["benchmark"].astype(str) == frame["dataset"]).all()
    ray_rows = ray.data.read_parquet(str(results)).take_all()
    assert len(ray_rows) == len(frame) and {r["benchmark"] for r in ray_rows} == set(BENCHMARKS)

    # each benchmark: its own template (prompt text and stop strings) and answer type
    examples = {ex.id: ex for spec in config.datasets for ex in load_examples(spec)}
    templates = {spec.name: load_template(config.prompt_for(spec)) for spec in config.datasets}
    assert [t.name for t in templates.values()] == ["stop_at_once", "strategyqa_cot_6shot"]
    rows = table.to_pylist()
    for row in rows:
        ex = examples[row["example_id"]]
        assert row["prompt_hash"] == prompt_hash(templates[row["dataset"]], ex.question)
        assert ex.answer_type == {"svamp_stop": "number", "strategyqa": "yes_no"}[row["dataset"]]
        assert (row["gold_answer"], row["correct"]) == (ex.gold, score(row["generated_text"], ex).correct)
    tokens = {b: [r["generated_tokens"] for r in rows if r["dataset"] == b] for b in BENCHMARKS}
    assert set(tokens["svamp_stop"]) == {1} and max(tokens["strategyqa"]) > 1
    assert {r["gold_answer"] for r in rows if r["dataset"] == "strategyqa"} == {"yes", "no"}

    # the summary: a row per (benchmark, strategy), printed with a benchmark column, and an
    # oracle per benchmark (the student and a fixed α to choose from)
    entries, oracle = summary["strategies"], summary["oracle"]
    assert [(s["benchmark"], s["label"], s["n"]) for s in entries] == [(b, s, 3) for b in BENCHMARKS for s in LABELS]
    assert [(o["benchmark"], o["n"]) for o in oracle] == [(b, 3) for b in BENCHMARKS]
    assert all(o["accuracy"] >= s["accuracy"] for o in oracle for s in entries if s["benchmark"] == o["benchmark"])
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    printed = format_table(entries + oracle).splitlines()
    assert printed[0].split()[:3] == ["benchmark", "strategy", "accuracy"] and len(printed) == 2 + len(entries) + len(oracle)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(d["name"], d["split"], d["n_examples"]) for d in manifest["datasets"]] == [(b, "test", 3) for b in BENCHMARKS]
    assert all(d["source"].endswith(".jsonl") and len(d["fingerprint"]) == 16 for d in manifest["datasets"])
    assert "dataset" not in manifest

    # resume: a lost part of one benchmark is the only unit run again; then nothing is
    before = part_mtimes(results)
    (results / "benchmark=strategyqa" / "part-b000001.parquet").unlink()
    run_evaluation(config, str(out))
    after = part_mtimes(results)
    assert {k: v for k, v in after.items() if "strategyqa/part-b000001" not in k} == \
           {k: v for k, v in before.items() if "strategyqa/part-b000001" not in k}
    assert sorted(after) == sorted(before)
    assert json.loads((out / "manifest.json").read_text())["sessions"][-1]["units_run"] == 1
    run_evaluation(config, str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sessions"][-1]["units_run"] == 0 and manifest["counts"]["rows"] == len(rows)
    assert part_mtimes(results) == after


def entries(*names: str) -> list[dict]:
    return [{"benchmark": n, "source": str(FIXTURES / f"{n}.jsonl"), "split": "test"} for n in names]


def test_each_entry_takes_its_benchmarks_prompt_unless_the_run_sets_one():
    config = parse_config({"datasets": entries("gsm8k", "math", "arc_easy")}, needs=())
    assert config.dataset is None and config.prompt is None
    assert [config.prompt_for(d) for d in config.datasets] == ["gsm8k_cot_8shot", "benchmark:math", "arc_cot_4shot"]
    assert config.default_prompt == "gsm8k_cot_8shot"
    set_once = parse_config({"datasets": entries("gsm8k", "math"), "prompt": "demo"}, needs=())
    assert [set_once.prompt_for(d) for d in set_once.datasets] == ["demo", "demo"]


def test_a_single_dataset_config_is_unchanged():
    """Same config dict (hence hash) as before `datasets` existed: its runs resume."""
    config = parse_config({"dataset": entries("svamp")[0]}, needs=())
    assert config.datasets == () and config.all_datasets == (config.dataset,) and config.prompt == "gsm8k_cot_8shot"
    assert "datasets" not in config.to_dict()


@pytest.mark.parametrize("raw, needs, message", [
    ({"dataset": entries("svamp")[0], "datasets": entries("gsm8k")}, (), "give either 'dataset' (one) or 'datasets' (a list), not both"),
    ({"datasets": entries("svamp", "svamp")}, (), "'datasets' has two entries named 'svamp'"),
    ({"datasets": [*entries("svamp"), {**entries("gsm8k")[0], "name": "svamp"}]}, (), "two entries named 'svamp'"),
    ({"datasets": [{**entries("svamp")[0], "name": "my/svamp"}]}, (), "cannot name a dataset in example ids and result folders"),
    ({"datasets": []}, (), "'datasets' must be a non-empty list"),
    ({"datasets": entries("svamp") + ["gsm8k"]}, (), "'datasets.1' must be a mapping"),
    ({"student": {"path": "s"}, "teacher": {"path": "t"}, "datasets": entries("svamp")}, MODEL_AND_DATA, "this job reads one dataset"),
])
def test_config_errors(raw, needs, message):
    with pytest.raises(UserError) as err:
        parse_config(raw, needs=needs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("config, job, key", [
    ("configs/demo.yaml", "evaluate", "cacc9276e1792af0"), ("configs/demo_predicted.yaml", "evaluate", "03f6ffe9686780e2"),
    # label runs from before labels.positions existed
    ("configs/demo_predicted.yaml", "label", "cde2aadfd90f65f2"), ("configs/gsm8k_qwen.yaml", "label", "6117ed1209f6cda8"),
])
def test_configs_keep_the_hash_their_earlier_runs_resume_by(config, job, key):
    """A field added to a section must leave configs that do not use it with their hash:
    runs written before resume only into a config with the same one."""
    from pipeline.config import load_config
    from pipeline.store.manifest import config_hash

    repo = Path(__file__).resolve().parents[1]
    ignored = ("labels", "signals", "export") if job == "evaluate" else ("strategies", "signals", "export")
    assert config_hash(load_config(str(repo / config)).results_key(ignored)) == key


def test_the_oracle_takes_each_examples_cheapest_right_fixed_alpha():
    import pyarrow as pa

    from pipeline.config import StrategySpec
    from pipeline.tasks.evaluate import summarize

    specs = [StrategySpec("student"), StrategySpec("teacher"), StrategySpec("fixed_alpha", {"alpha": 1.0, "n_tokens": 1}),
             StrategySpec("fixed_alpha", {"alpha": 2.0, "n_tokens": 2})]
    right = {"student": [1, 0, 0, 0], "teacher": [1, 1, 1, 1], specs[2].label: [0, 1, 0, 0], specs[3].label: [0, 1, 1, 0]}
    tokens = {"student": 0, "teacher": 9, specs[2].label: 1, specs[3].label: 2}
    rows = [{"strategy": s, "example_id": f"e{i}", "correct": bool(c), "teacher_tokens": tokens[s],
             "teacher_tokens_processed": 10 * tokens[s], "teacher_calls": tokens[s], "latency_s": 0.1}
            for s, cs in right.items() for i, c in enumerate(cs)]
    summary = summarize(pa.Table.from_pylist(rows), specs)
    [oracle] = summary["oracle"]
    assert (oracle["accuracy"], oracle["n"]) == (0.75, 4)  # the teacher is not a fixed α: e3 stays wrong
    assert oracle["teacher_tokens_per_example"] == (0 + 1 + 2 + 0) / 4  # e1 by α = 1 (1 token), e2 by α = 2 (2)
    # the chosen rows' other costs, not each cost's own minimum
    assert (oracle["teacher_tokens_processed_per_example"], oracle["teacher_calls_per_example"]) == (30 / 4, 3 / 4)
    assert oracle["vs_student"]["value"] == 0.5
    assert summarize(pa.Table.from_pylist([r for r in rows if r["strategy"] in ("student", "teacher")]), specs[:2])["oracle"] == []
