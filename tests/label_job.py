"""The label job on tiny models, run as a user runs it: `python -m jobs.label_alpha` in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def label_job(tiny_pair, tmp_path: Path, n_examples: int, labels: dict) -> Callable[..., subprocess.CompletedProcess]:
    """Writes `n_examples` addition problems and a config with these `labels` settings; returns
    a function running the job on them into tmp_path/out, with extra command-line arguments."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} plus 1?", "answer": str(i + 1)}) + "\n" for i in range(n_examples)))
    raw = {
        "student": {"path": str(tiny_pair[0])}, "teacher": {"path": str(tiny_pair[1])},
        "dataset": {"source": str(data), "name": "d", "split": "test", "answer_format": "plain"},
        "prompt": "demo", "decoding": {"max_new_tokens": 6, "batch_size": 2},
        "labels": labels,
        "ray": {"student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    # a fresh machine: no Ray token yet, no auth mode chosen
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path / "home")}
    return lambda *extra: subprocess.run(
        [sys.executable, "-m", "jobs.label_alpha", "--config", str(cfg), "--out", str(tmp_path / "out"), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
