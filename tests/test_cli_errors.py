"""Expected mistakes end the job with one clear line on stderr, exit status 2, no traceback."""
import json
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
        "dataset": {"source": str(data)},
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
