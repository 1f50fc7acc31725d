"""jobs.report on a small real run of the demo world: evaluation, labels and a predictor."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from matplotlib import colors, image

from pipeline.report.plots import HELPED

REPO = Path(__file__).resolve().parents[1]


def job(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    ev, lab, art = root / "eval", root / "train", root / "alpha-v1"
    eval_out = ok(job("jobs.evaluate", "--config", "configs/demo.yaml", "--out", str(ev), "--set", "dataset.limit=60"))
    ok(job("jobs.label_alpha", "--config", "configs/demo.yaml", "--out", str(lab), "--set", "dataset.limit=80",
           "--set", "dataset.source=demo_world/data/train.jsonl", "--set", "dataset.split=train"))
    ok(job("jobs.train_predictor", "--labels", str(lab / "labels"), "--out", str(art), "--folds", "2"))
    report_out = ok(job("jobs.report", str(ev), str(lab), str(art)))
    return {"eval": ev, "labels": lab, "artifact": art, "report": ev / "report",
            "eval_stdout": eval_out, "report_stdout": report_out}


def csv(runs, name: str) -> pd.DataFrame:
    return pd.read_csv(runs["report"] / "data" / f"{name}.csv")


def test_jobs_print_the_report_command_and_the_report_lists_its_files(runs):
    assert f"python -m jobs.report {runs['eval']}" in runs["eval_stdout"]
    assert "report.html" in runs["report_stdout"]
    assert {p.name for p in (runs["report"] / "plots").iterdir()} == {
        "strategies.png", "accuracy_vs_alpha.png", "helped_hurt.png", "predictor.png"}
    md = (runs["report"] / "report.md").read_text()
    assert "![Accuracy vs α](plots/accuracy_vs_alpha.png)" in md and "| run |" in md


def test_plot_data_equals_pandas_on_the_parquet(runs):
    results = pq.read_table(runs["eval"] / "results").to_pandas()
    labels = pq.read_table(runs["labels"] / "labels").to_pandas()
    heldout = pd.read_parquet(runs["artifact"] / "heldout.parquet")

    # accuracy vs α: fixed_alpha rows of the evaluation, every grid α of the labels
    acc = csv(runs, "accuracy_vs_alpha").set_index(["run", "source", "alpha"])["accuracy"]
    fixed = results[results["strategy_name"] == "fixed_alpha"].groupby("alpha")["correct"].mean()
    for alpha, value in fixed.items():
        assert acc[("eval", "evaluation", alpha)] == pytest.approx(value)
    for i, alpha in enumerate(labels["alpha_grid"].iloc[0]):
        assert acc[("train", "labels", alpha)] == pytest.approx(np.mean([c[i] for c in labels["correct"]]))
    ref = csv(runs, "reference_accuracy").set_index("model")["accuracy"]
    for model in ("student", "teacher"):
        assert ref[model] == pytest.approx(results.loc[results["strategy_name"] == model, "correct"].mean())

    # helped / hurt: the best fixed α against the student, binned by the student's entropy
    hh = csv(runs, "helped_hurt")
    ev = hh[hh["run"] == "eval"]
    best = results[results["strategy_name"] == "fixed_alpha"].groupby("strategy")["correct"].mean().idxmax()
    assert set(ev["injection"]) == {best}
    student = results[results["strategy_name"] == "student"].set_index("example_id")
    injected = results[results["strategy"] == best].set_index("example_id")["correct"].reindex(student.index)
    entropy = student["student_first_entropy"]
    edges = np.histogram_bin_edges(entropy, bins=len(ev))
    assert np.histogram(entropy[injected & ~student["correct"]], bins=edges)[0].tolist() == ev["helped"].tolist()
    assert np.histogram(entropy[~injected & student["correct"]], bins=edges)[0].tolist() == ev["hurt"].tolist()
    assert ev["bin_lo"].tolist() == pytest.approx(edges[:-1].tolist())

    # the predictor's held-out comparison and savings
    comp = csv(runs, "predictor").set_index("policy")["accuracy"]
    assert comp["predicted α"] == pytest.approx(heldout["predicted_correct"].mean())
    assert comp["oracle"] == pytest.approx(heldout["oracle_correct"].mean())
    assert comp["student (α=0)"] == pytest.approx(heldout["student_correct"].mean())
    savings = csv(runs, "predictor_savings").iloc[0]
    assert savings["no_teacher_share"] == pytest.approx((heldout["chosen_alpha"] == 0).mean())

    # strategies: accuracy, teacher tokens per example, throughput
    table = csv(runs, "strategies").set_index("strategy")
    for strategy, rows in results.groupby("strategy"):
        assert table.loc[strategy, "accuracy"] == pytest.approx(rows["correct"].mean())
        assert table.loc[strategy, "teacher_tokens_per_example"] == pytest.approx(rows["teacher_tokens"].mean())
        assert table.loc[strategy, "examples_per_s"] == pytest.approx(len(rows) / rows["latency_s"].sum())
    facts = csv(runs, "runs").set_index("job")
    assert facts.loc["evaluate", "status"] == "complete" and facts.loc["evaluate", "student"].endswith("demo_world/student")


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium not found: install Debian's chromium (apt-get install chromium) or set CHROMIUM"
    return found


def test_report_opens_in_headless_chromium(runs, tmp_path):
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1100,2400", f"--screenshot={shot}", (runs["report"] / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page_errors = [line for line in proc.stderr.splitlines()
                   if "CONSOLE" in line or "Failed to load" in line or "Not allowed to load" in line]
    assert not page_errors, page_errors
    pixels = image.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    # the embedded helped/hurt plot was decoded and drawn: its bar colour is on screen
    helped = np.array(colors.to_rgb(HELPED))
    assert (np.abs(pixels - helped).max(axis=-1) < 0.02).sum() > 100


def test_report_refuses_what_is_not_a_run(tmp_path):
    missing = job("jobs.report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "run directory not found" in missing.stderr and "Traceback" not in missing.stderr
    empty = job("jobs.report", str(tmp_path))
    assert empty.returncode == 2 and "nothing to report" in empty.stderr
