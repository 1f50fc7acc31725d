"""Expected mistakes end the job with one clear line on stderr, exit status 2, no traceback."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "ok.jsonl"
    data.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "1+1=2\n#### 2"}) + "\n")
    return root, {
        "student": {"path": str(tiny_pair[0])},
        "teacher": {"path": str(tiny_pair[1])},
        "dataset": {"source": str(data), "split": "test"},
        "decoding": {"max_new_tokens": 4},
        "strategies": [{"name": "student"}],
    }


def run_job(root, raw, name):
    path = root / f"{name}.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return subprocess.run(
        [sys.executable, "-m", "jobs.evaluate", "--config", str(path), "--out", str(root / f"out-{name}")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def with_change(raw, section, **fields):
    changed = json.loads(json.dumps(raw))
    if isinstance(changed.get(section), dict):
        changed[section].update(fields)
    else:
        changed[section] = fields["value"]
    return changed


def write(root, name, text):
    path = root / name
    path.write_text(text)
    return str(path)


CASES = {
    "missing_model": (lambda root, raw: with_change(raw, "student", path=str(root / "no-such-model")), "model not found"),
    "malformed_row": (
        lambda root, raw: with_change(raw, "dataset", source=write(root, "bad.jsonl", '{"question": "q", "answer": "#### 1"}\n{oops\n')),
        "line 2",
    ),
    "empty_dataset": (lambda root, raw: with_change(raw, "dataset", source=write(root, "empty.jsonl", "")), "empty"),
    "negative_n": (lambda root, raw: with_change(raw, "strategies", value=[{"name": "fixed_alpha", "alpha": 1.0, "n_tokens": -1}]), "n_tokens"),
    "non_numeric_alpha": (lambda root, raw: with_change(raw, "strategies", value=[{"name": "fixed_alpha", "alpha": "high", "n_tokens": 2}]), "alpha"),
    "unknown_key": (lambda root, raw: {**raw, "bogus": 1}, "unknown key"),
    "bad_yaml": (lambda root, raw: "student: [unclosed\n", "invalid YAML"),
    "alpha_1_and_1.0": (lambda root, raw: with_change(raw, "strategies", value=[
        {"name": "fixed_alpha", "alpha": 1, "n_tokens": 2}, {"name": "fixed_alpha", "alpha": 1.0, "n_tokens": 2}]), "duplicate strategies"),
    "switch_nan": (lambda root, raw: with_change(raw, "strategies", value=[{"name": "switch", "tau0": float("nan")}]), "tau0"),
    "bool_as_string": (lambda root, raw: with_change(raw, "decoding", reuse_preamble_cache="maybe"), "reuse_preamble_cache"),
    "budget_beyond_context": (lambda root, raw: with_change(raw, "decoding", max_new_tokens=5000), "does not fit the context"),
    "no_strategies_for_evaluate": (lambda root, raw: {k: v for k, v in raw.items() if k != "strategies"}, "needs the section(s) ['strategies']"),
    "split_not_named": (lambda root, raw: with_change(raw, "dataset", source=write(root, "rows.jsonl", '{"question": "q", "answer": "#### 1"}\n'), split=None), "split is required"),
    "typo_in_relative_model_path": (lambda root, raw: with_change(raw, "student", path="tests/no-such-model"), "model not found"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_expected_mistake_is_one_clear_line(base, case):
    root, raw = base
    make, message = CASES[case]
    result = run_job(root, make(root, raw), case)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (root / f"out-{case}").exists()  # nothing half-written


def evaluate(root, raw, out, *extra, env=None):
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(path), "--out", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def one_error_line(result, message):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


def test_bad_output_locations_are_one_line(base, tmp_path):
    root, raw = base
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    one_error_line(evaluate(root, raw, a_file), "is a file")
    submitted = {**os.environ, "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}  # what ray job submit sets for its entrypoint
    one_error_line(evaluate(root, raw, "relative/out", env=submitted), "relative")


def test_lock_stale_resume_and_failed_start(base, tmp_path):
    """A run that failed at start-up does not block the corrected rerun; a dead run's lock is
    taken over; a live run's lock is respected; changed data at the same --out is refused."""
    root, raw = base
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "1+1=2\n#### 2"}) + "\n")
    raw = with_change(raw, "dataset", source=str(data))
    out = tmp_path / "run"
    failed = evaluate(root, raw, out, "--set", "ray.student.num_cpus=64", "--set", "ray.placement_timeout_s=1")
    one_error_line(failed, "could not place")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"}))
    corrected = evaluate(root, with_change(raw, "decoding", max_new_tokens=5), out)
    assert corrected.returncode == 0, corrected.stderr[-3000:]
    assert "taking over the lock of a run that died" in corrected.stdout + corrected.stderr
    assert not (out / ".run.lock").exists()

    (out / ".run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "now"}))
    one_error_line(evaluate(root, with_change(raw, "decoding", max_new_tokens=5), out), "being written by another run")
    (out / ".run.lock").unlink()

    data.write_text(json.dumps({"question": "What is 1 plus 2?", "answer": "1+2=3\n#### 3"}) + "\n")  # same path, new data
    stale = evaluate(root, with_change(raw, "decoding", max_new_tokens=5), out)
    one_error_line(stale, "dataset_fingerprint")
    assert "config_hash" not in stale.stderr


def test_each_job_needs_only_the_sections_it_uses():
    from pipeline.config import MODEL_AND_DATA, parse_config
    from pipeline.errors import UserError

    exported = parse_config({"export": {"drop_incorrect": True}}, needs=())  # jobs.export_distill
    assert exported.student is None and exported.export.drop_incorrect
    with pytest.raises(UserError, match=r"needs the section\(s\) \['teacher', 'dataset'\]"):
        parse_config({"student": {"path": "x"}}, needs=MODEL_AND_DATA)
