"""Mistakes at the process level: the command line itself, output locations, locks, stale
resumes and failed starts (the bad-input battery of configs and files: test_bad_inputs.py)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
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


def with_change(raw, section, **fields):
    changed = json.loads(json.dumps(raw))
    changed[section].update(fields)
    return changed


@pytest.mark.slow  # a Python process per case
@pytest.mark.parametrize("change, message", [
    (lambda root, raw: with_change(raw, "student", path=str(root / "no-such-model")), "model not found"),
    (lambda root, raw: with_change(raw, "decoding", reuse_preamble_cache="maybe"), "reuse_preamble_cache"),
])
def test_the_command_line_gives_one_line_and_exit_2(base, change, message):
    """The battery (test_bad_inputs.py) runs each job's main in process; these go through
    `python -m jobs.evaluate` itself."""
    root, raw = base
    path = root / "bad.yaml"
    path.write_text(yaml.safe_dump(change(root, raw)))
    result = subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(path), "--out", str(root / "out-bad")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    one_error_line(result, message)
    assert not (root / "out-bad").exists()  # nothing half-written


def evaluate(root, raw, out, *extra, env=None):
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(path), "--out", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def one_error_line(result, message):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


@pytest.mark.ray  # runs a job on Ray
def test_bad_output_locations_are_one_line(base, tmp_path):
    root, raw = base
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    one_error_line(evaluate(root, raw, a_file), "is a file")
    submitted = {**os.environ, "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}  # what ray job submit sets for its entrypoint
    one_error_line(evaluate(root, raw, "relative/out", env=submitted), "relative")


@pytest.mark.ray  # runs a job on Ray
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
    for content in ("", json.dumps({"host": socket.gethostname(), "pid": "x"})):  # half-written or foreign: respected
        (out / ".run.lock").write_text(content)
        one_error_line(evaluate(root, with_change(raw, "decoding", max_new_tokens=5), out), "names no run")
    (out / ".run.lock").unlink()

    part = next((out / "results").glob("part-*.parquet"))  # a truncated part: set aside, its unit redone
    part.write_bytes(part.read_bytes()[:64])
    redone = evaluate(root, with_change(raw, "decoding", max_new_tokens=5), out)
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert f"set aside {part.name} (unreadable" in redone.stdout and "its unit runs again" in redone.stdout
    assert pq.read_table(out / "results").num_rows == 1
    assert len(list((out / "results" / ".set-aside").iterdir())) == 1

    # same path, same size, new content, and the old modification time restored (cp -p, rsync -a)
    before = data.stat()
    data.write_text(json.dumps({"question": "What is 1 plus 2?", "answer": "1+2=3\n#### 3"}) + "\n")
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_size == before.st_size
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
