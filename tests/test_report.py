"""jobs.report on a small real run of the demo world: evaluation, labels and a predictor."""
import json
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

from pipeline.demo.families import FAMILIES as DEMO_FAMILIES
from pipeline.report.plots import HELPED

pytestmark = pytest.mark.ray  # its runs fixture runs the jobs on Ray

REPO = Path(__file__).resolve().parents[1]


def job(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def jobs(*commands: list[str], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Several jobs at once (each its own process), waited for in order."""
    procs = [subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for args in commands]
    done = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def ok_all(procs: list[subprocess.CompletedProcess]) -> list[str]:
    return [ok(p) for p in procs]


FAMILIES = [f.name for f in DEMO_FAMILIES]

# what jobs.score_signals writes (running it costs a Ray start and a TA: too slow here); one
# signal with a single class of answers has no AUC
SIGNALS_SUMMARY = {"n": 40, "student_accuracy": 0.4, "teacher_accuracy": 0.95,
                   "auc_self_consistency_vs_student_correct": 0.61, "auc_ta_mean_logprob_vs_student_correct": 0.83,
                   "auc_ta_min_logprob_vs_student_correct": 0.77, "auc_ta_mean_logprob_vs_teacher_correct": None}


def first_rows(source: Path, out: Path, n: int) -> Path:
    """The first n rows of a demo split (each names its family: the dataset's groups)."""
    out.write_text("".join(line + "\n" for line in source.read_text().splitlines()[:n]))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    ev, lab, art, mlp = root / "eval", root / "train", root / "alpha-v1", root / "alpha-mlp"
    test = first_rows(REPO / "demo_world/data/test.jsonl", root / "test.jsonl", 40)
    train = first_rows(REPO / "demo_world/data/train.jsonl", root / "train.jsonl", 60)
    eval_out = ok(job("jobs.evaluate", "--config", "configs/demo.yaml", "--out", str(ev), "--set", f"dataset.source={test}"))
    ok(job("jobs.label_alpha", "--config", "configs/demo.yaml", "--out", str(lab), "--set", f"dataset.source={train}",
           "--set", "dataset.split=train"))
    # two artifacts to compare (sklearn on the student's features, an MLP on both models'), trained side by side
    ok_all(jobs(["jobs.train_predictor", "--labels", str(lab / "labels"), "--out", str(art), "--folds", "2"],
                ["jobs.train_predictor", "--labels", str(lab / "labels"), "--out", str(mlp), "--folds", "2",
                 "--model", "torch_mlp", "--features", "two_model"]))
    (ev / "signals_summary.json").write_text(json.dumps(SIGNALS_SUMMARY))
    # beside the full report, one on an artifact alone: every other section says what is missing
    alone = root / "artifact-only-report"
    report_out, _ = ok_all(jobs(["jobs.report", str(ev), str(lab), str(art), str(mlp)],
                                ["jobs.report", str(art), "--out", str(alone)]))
    return {"eval": ev, "labels": lab, "artifact": art, "mlp": mlp, "report": ev / "report", "alone": alone,
            "eval_stdout": eval_out, "report_stdout": report_out}


def csv(runs, name: str) -> pd.DataFrame:
    return pd.read_csv(runs["report"] / "data" / f"{name}.csv")


def test_jobs_print_the_report_command_and_the_report_lists_its_files(runs):
    assert f"python -m jobs.report {runs['eval']}" in runs["eval_stdout"]
    assert "report.html" in runs["report_stdout"]
    assert {p.name for p in (runs["report"] / "plots").iterdir()} == {
        "tradeoff.png", "accuracy_vs_alpha.png", "accuracy_vs_alpha_by_group.png", "correct_alpha.png",
        "fixed_vs_student.png", "helped_hurt.png", "predictor.png", "signals.png"}
    assert {p.name for p in (runs["report"] / "data").iterdir()} >= {
        f"{name}.csv" for name in ("comparison", "predictors", "tradeoff", "strategies", "accuracy_vs_alpha",
                                   "accuracy_vs_alpha_by_group", "reference_accuracy_by_group", "correct_alpha",
                                   "correct_alpha_summary", "fixed_vs_student", "helped_hurt", "signals", "runs")}
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
    comp = csv(runs, "predictor").query("run == 'alpha-v1'").set_index("policy")["accuracy"]
    assert comp["predicted α"] == pytest.approx(heldout["predicted_correct"].mean())
    assert comp["oracle"] == pytest.approx(heldout["oracle_correct"].mean())
    assert comp["student (α=0)"] == pytest.approx(heldout["student_correct"].mean())
    savings = csv(runs, "predictor_savings").iloc[0]
    assert savings["no_teacher_share"] == pytest.approx((heldout["chosen_alpha"] == 0).mean())

    # strategies: accuracy, teacher tokens per example, throughput
    table = csv(runs, "strategies").set_index("strategy")
    for strategy, rows in results.groupby("strategy"):
        assert table.loc[strategy, "accuracy"] == pytest.approx(rows["correct"].mean())
        for cost in ("teacher_tokens", "teacher_tokens_processed", "teacher_calls"):
            assert table.loc[strategy, f"{cost}_per_example"] == pytest.approx(rows[cost].mean())
        assert table.loc[strategy, "examples_per_s"] == pytest.approx(len(rows) / rows["latency_s"].sum())
    facts = csv(runs, "runs").set_index("job")
    assert facts.loc["evaluate", "status"] == "complete" and facts.loc["evaluate", "student"].endswith("demo_world/student")


def grid_outcomes(labels: pd.DataFrame) -> pd.DataFrame:
    """Per labelled example and grid α: correct (a wide frame, columns in grid order)."""
    grid = list(labels["alpha_grid"].iloc[0])
    return pd.DataFrame([list(c) for c in labels["correct"]], index=labels["example_id"], columns=grid)


def test_per_group_accuracy_vs_alpha_equals_pandas(runs):
    results = pq.read_table(runs["eval"] / "results").to_pandas()
    labels = pq.read_table(runs["labels"] / "labels").to_pandas()
    assert set(results["group"]) == set(labels["group"]) == set(FAMILIES)
    acc = csv(runs, "accuracy_vs_alpha_by_group").set_index(["run", "source", "group", "alpha"])
    wide = grid_outcomes(labels)
    for family, ids in labels.groupby("group")["example_id"]:
        for alpha in wide.columns:
            assert acc.loc[("train", "labels", family, alpha), "accuracy"] == pytest.approx(wide.loc[ids, alpha].mean())
            assert acc.loc[("train", "labels", family, alpha), "n"] == len(ids)
    fixed = results[results["strategy_name"] == "fixed_alpha"].groupby(["group", "alpha"])["correct"].mean()
    for (family, alpha), value in fixed.items():
        assert acc.loc[("eval", "evaluation", family, alpha), "accuracy"] == pytest.approx(value)
    assert len(acc) == len(fixed) + len(FAMILIES) * wide.shape[1]
    ref = csv(runs, "reference_accuracy_by_group").set_index(["model", "group"])["accuracy"]
    student = results[results["strategy_name"] == "student"].groupby("group")["correct"].mean()
    for family, value in student.items():
        assert ref[("student", family)] == pytest.approx(value)


def test_correct_alpha_intervals_equal_pandas(runs):
    labels = pq.read_table(runs["labels"] / "labels").to_pandas()
    every = csv(runs, "correct_alpha")
    ca = every[every["at"] == "segment"]
    at_grid = every[every["at"] == "grid α"]
    wide_all = grid_outcomes(labels)
    assert at_grid[at_grid["group"] == "all"].set_index("alpha_lo")["right"].to_dict() == {a: int(wide_all[a].sum()) for a in wide_all.columns}
    ends = np.unique(np.concatenate([*labels["interval_lo"], *labels["interval_hi"]]))
    assert sorted(set(ca["alpha_lo"])) == pytest.approx(ends[:-1].tolist())

    def right_at(rows: pd.DataFrame, alpha: float) -> int:  # examples with a correct leaf interval holding α
        return sum(any(c and lo <= alpha <= hi for lo, hi, c in zip(r.interval_lo, r.interval_hi, r.interval_correct))
                   for r in rows.itertuples())

    for group in ["all", *FAMILIES]:
        rows = labels if group == "all" else labels[labels["group"] == group]
        part = ca[ca["group"] == group]
        assert len(part) == len(ends) - 1 and set(part["n"]) == {len(rows)}
        mids = (part["alpha_lo"] + part["alpha_hi"]) / 2
        assert part["right"].tolist() == [right_at(rows, m) for m in mids]
    summary = csv(runs, "correct_alpha_summary").set_index("group")
    wide = grid_outcomes(labels)
    for group in ["all", *FAMILIES]:
        rows = labels if group == "all" else labels[labels["group"] == group]
        some = rows["interval_correct"].map(lambda c: bool(np.any(c)))
        assert summary.loc[group, "right_at_alpha_0"] == wide.loc[rows["example_id"], 0.0].sum()
        assert summary.loc[group, "right_at_some_alpha"] == some.sum()
        assert summary.loc[group, "never_right"] == (~some).sum()
        best = wide.loc[rows["example_id"]].mean()
        assert summary.loc[group, "best_grid_accuracy"] == pytest.approx(best.max())


def test_fixed_vs_student_by_entropy_equals_pandas(runs):
    labels = pq.read_table(runs["labels"] / "labels").to_pandas()
    wide = grid_outcomes(labels)
    injected = wide.drop(columns=0.0).mean()
    best = injected.index[int(np.argmax(injected.to_numpy()))]  # first in grid order on ties
    fs = csv(runs, "fixed_vs_student")
    assert set(fs["injection"]) == {f"α={best:g}, N={int(labels['n_tokens'].iloc[0])}"}
    entropy = labels.set_index("example_id")["student_entropy"]
    edges = np.histogram_bin_edges(entropy, bins=len(fs))
    student, fixed = wide[0.0], wide[best] & ~wide[0.0]
    assert fs["bin_lo"].tolist() == pytest.approx(edges[:-1].tolist())
    assert fs["n"].tolist() == np.histogram(entropy, bins=edges)[0].tolist()
    assert fs["student_right"].tolist() == np.histogram(entropy[student], bins=edges)[0].tolist()
    assert fs["fixed"].tolist() == np.histogram(entropy[fixed], bins=edges)[0].tolist()
    fixable = wide.drop(columns=0.0).any(axis=1) & ~wide[0.0]
    assert fs["fixed_at_some_alpha"].tolist() == np.histogram(entropy[fixable], bins=edges)[0].tolist()


def test_comparison_and_predictors_equal_pandas(runs):
    results = pq.read_table(runs["eval"] / "results").to_pandas()
    labels = pq.read_table(runs["labels"] / "labels").to_pandas()
    comp = csv(runs, "comparison").set_index(["run", "source", "policy"])

    for name, policy in (("student", "student"), ("teacher", "teacher")):
        rows = results[results["strategy_name"] == name]
        assert comp.loc[("eval", "evaluation", policy), "accuracy"] == pytest.approx(rows["correct"].mean())
        assert comp.loc[("eval", "evaluation", policy), "teacher_tokens_per_example"] == pytest.approx(rows["teacher_tokens"].mean())
    fixed = results[results["strategy_name"] == "fixed_alpha"].groupby("strategy")["correct"].mean()
    assert comp.loc[("eval", "evaluation", "best fixed α"), "accuracy"] == pytest.approx(fixed.max())

    wide, n_tokens = grid_outcomes(labels), int(labels["n_tokens"].iloc[0])
    lab = comp.sort_index().loc[("train", "labels")]
    assert lab.loc["student", "accuracy"] == pytest.approx(wide[0.0].mean())
    assert lab.loc["best fixed α", "accuracy"] == pytest.approx(wide.mean().max())
    assert lab.loc["oracle", "accuracy"] == pytest.approx(wide.any(axis=1).mean())
    assert lab.loc["oracle", "teacher_tokens_per_example"] == pytest.approx(
        n_tokens * (wide.any(axis=1) & ~wide[0.0]).mean())
    gate = json.loads((runs["artifact"] / "metadata.json").read_text())["entropy_gate"]
    entropy = labels.set_index("example_id")["student_entropy"]
    inside = (entropy >= gate["lo"]) & (entropy <= gate["hi"])
    gated = comp.reset_index().query("run == 'train' and policy == 'calibrated entropy gate'")
    row = gated[gated["detail"].str.startswith("gate of alpha-v1:")].iloc[0]
    assert row["accuracy"] == pytest.approx(wide[gate["alpha"]].where(inside, wide[0.0]).mean())
    assert row["teacher_tokens_per_example"] == pytest.approx(n_tokens * inside.mean() * (gate["alpha"] != 0))

    preds = csv(runs, "predictors").set_index("run")
    for name in ("alpha-v1", "alpha-mlp"):
        meta = json.loads((runs[{"alpha-v1": "artifact", "alpha-mlp": "mlp"}[name]] / "metadata.json").read_text())
        heldout = pd.read_parquet(runs[{"alpha-v1": "artifact", "alpha-mlp": "mlp"}[name]] / "heldout.parquet")
        m = meta["metrics"]
        assert preds.loc[name, "model"] == meta["model_kind"]
        assert preds.loc[name, "features"] == meta.get("feature_set", "student")
        # "0.780 [0.660, 0.868]": the value and its 95 % interval, three decimals
        value, lo, hi = (float(x) for x in preds.loc[name, "heldout_accuracy"].replace("[", "").replace("]", "").replace(",", "").split())
        assert value == pytest.approx(heldout["predicted_correct"].mean(), abs=5e-4) and lo <= value <= hi
        assert preds.loc[name, "teacher_call_share"] == pytest.approx(m.get("teacher_call_share", 1 - m["no_teacher_share"]))
        held = comp.loc[(name, "held-out", "predicted α")]
        assert held["accuracy"] == pytest.approx(heldout["predicted_correct"].mean())
        assert held["teacher_tokens_per_example"] == pytest.approx(n_tokens * (heldout["chosen_alpha"] != 0).mean())
    assert preds.loc["alpha-mlp", "model"] == "torch_mlp" and preds.loc["alpha-mlp", "features"] == "two_model"

    # the trade-off: every evaluation strategy, numbered once, at its accuracy and cost
    points = csv(runs, "tradeoff")
    assert points["marker"].tolist() == list(range(1, len(points) + 1))
    ev = points[points["source"] == "evaluation"].set_index("strategy")
    for strategy, rows in results.groupby("strategy"):
        assert ev.loc[strategy, "accuracy"] == pytest.approx(rows["correct"].mean())
        assert ev.loc[strategy, "teacher_tokens_per_example"] == pytest.approx(rows["teacher_tokens"].mean())
        assert ev.loc[strategy, "teacher_tokens_processed_per_example"] == pytest.approx(rows["teacher_tokens_processed"].mean())
        assert ev.loc[strategy, "teacher_calls_per_example"] == pytest.approx(rows["teacher_calls"].mean())
    assert set(points.loc[points["source"] == "held-out", "run"]) == {"alpha-v1", "alpha-mlp"}
    # each cost's front: the points nothing beats on both accuracy and that cost (a cost not known: never on it)
    for cost, column in (("teacher_tokens_per_example", "pareto"), ("teacher_tokens_processed_per_example", "pareto_read"),
                         ("teacher_calls_per_example", "pareto_calls")):
        front = points[points[column]]
        assert len(front) and front.sort_values(cost)["accuracy"].is_monotonic_increasing, cost
        assert front[cost].notna().all() and points.loc[points[cost] == 0, column].any(), cost
    assert points.loc[points["pareto"], "accuracy"].max() == points["accuracy"].max()


def test_labels_over_an_n_grid_give_first_n_fixed_alpha_at_each_n():
    """At each N: the grid's best α ≠ 0 (the lowest of equals), at N teacher tokens."""
    from pipeline.report.runs import Run
    from pipeline.report.tables import tradeoff

    labels = pd.DataFrame({"example_id": ["a", "b", "c"], "group": None, "n_tokens": 1, "student_entropy": 0.5,
                           "alpha_grid": [[1.0, 0.0, 2.0]] * 3, "correct": [[True, False, False]] * 3, "n_grid": [[1, 9]] * 3,
                           # per N, per α: at N = 1 α = 1 is right twice; at N = 9, α = 2 three times
                           "correct_per_n": [[[True, False, False], [False, True, True]], [[True, False, True], [False, False, True]],
                                             [[False, True, False], [True, False, True]]]})
    points = tradeoff([Run("lab", "lab", labels=labels)])
    first_n = points[points["strategy"].str.startswith("first-N")].set_index("teacher_tokens_per_example")
    assert first_n.loc[1.0, "strategy"] == "first-N fixed α: N=1 (best α=1)" and first_n.loc[1.0, "accuracy"] == pytest.approx(2 / 3)
    assert first_n.loc[9.0, "strategy"] == "first-N fixed α: N=9 (best α=2)" and first_n.loc[9.0, "accuracy"] == 1.0


def test_the_pareto_front_is_the_points_nothing_beats_on_accuracy_and_cost():
    from pipeline.report.tables import pareto_front

    accuracy = np.array([0.2, 0.5, 0.5, 0.4, 0.9, 0.45])
    tokens = np.array([0.0, 1.0, 2.0, 0.5, np.nan, 0.5])
    # 0.5 at 2 tokens is beaten by 0.5 at 1; 0.4 at 0.5 by 0.45 at 0.5; unknown cost: never on it
    assert pareto_front(accuracy, tokens) == [True, True, False, False, False, True]


def test_signal_auc_equals_the_summary(runs):
    auc = csv(runs, "signals")
    expected = {k[len("auc_"):]: v for k, v in SIGNALS_SUMMARY.items() if k.startswith("auc_")}
    assert len(auc) == len(expected) and set(auc["run"]) == {"eval"}
    for r in auc.itertuples():
        value = expected[f"{r.signal}_vs_{r.target}"]
        assert (np.isnan(r.auc) if value is None else r.auc == pytest.approx(value)) and r.n == SIGNALS_SUMMARY["n"]


def test_sections_without_data_say_so(runs):
    page = (runs["alone"] / "report.html").read_text()
    for message in ("no evaluation run given", "no label run given", "no signals run given"):
        assert message in page and message in (runs["alone"] / "report.md").read_text()
    assert "no α-predictor artifact given" not in page and "α-predictor on held-out examples" in page
    full = (runs["report"] / "report.html").read_text()
    assert "class='missing'" not in full
    # runs whose rows name no group: the per-group section says so
    from pipeline.report.page import NO_GROUPS, build_sections
    from pipeline.report.runs import load_run

    labels = load_run(str(runs["labels"]))
    labels.labels["group"] = None
    by_group = {s.key: s for s in build_sections([labels])}["accuracy_vs_alpha_by_group"]
    assert by_group.missing == NO_GROUPS and by_group.png is None


def test_runs_of_older_versions_still_report(runs, tmp_path):
    """Rows without the group column, artifacts without feature_set and teacher_call_share."""
    from pipeline.report import tables
    from pipeline.report.runs import load_run

    old_eval = tmp_path / "old-eval"
    (old_eval / "results").mkdir(parents=True)
    pq.write_table(pq.read_table(runs["eval"] / "results").drop(["group", "teacher_calls", "consultations"]),
                   old_eval / "results" / "part-0.parquet")
    run = load_run(str(old_eval))
    assert run.results["group"].isna().all() and not tables.has_groups([run])
    assert len(tables.comparison([run])) and len(tables.accuracy_vs_alpha_by_group([run]))
    assert tables.strategy_table([run])["teacher_calls_per_example"].isna().all()

    signals_only = tmp_path / "signals-only"  # a signals run written beside, not into, the evaluation
    signals_only.mkdir()
    (signals_only / "signals_summary.json").write_text(json.dumps(SIGNALS_SUMMARY))
    assert len(tables.signal_auc([load_run(str(signals_only))])) == 4

    art = load_run(str(runs["artifact"]))
    del art.predictor["feature_set"], art.predictor["metrics"]["teacher_call_share"]
    row = tables.predictors([art]).iloc[0]
    assert row["features"] == "student"
    assert row["teacher_call_share"] == pytest.approx(1 - art.predictor["metrics"]["no_teacher_share"])


def chromium() -> str:
    """A headless Chromium: $CHROMIUM, or one on PATH. None can be installed with pip here
    (Playwright's download host is unreachable), so without one the browser test reports
    in the summary that it did not run; CI installs Debian's and sets REPORT_BROWSER=required."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        why = "headless Chromium not found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)"
        if os.environ.get("REPORT_BROWSER") == "required":
            pytest.fail(why)
        pytest.skip(f"DID NOT RUN: the report's browser test: {why}")
    return found


def test_report_opens_in_headless_chromium(runs, tmp_path):
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1100,12000", f"--screenshot={shot}", (runs["report"] / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page_errors = [line for line in proc.stderr.splitlines()
                   if "CONSOLE" in line or "Failed to load" in line or "Not allowed to load" in line]
    assert not page_errors, page_errors
    if os.environ.get("REPORT_SCREENSHOT"):  # keep the screenshot to look at
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])
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


def test_the_report_replaces_only_a_report_directory(tmp_path):
    from pipeline.errors import UserError
    from pipeline.report.page import REPORT_MARKER, check_replaceable

    check_replaceable(tmp_path / "new")  # a new directory
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("")
    (mine / REPORT_MARKER).write_text(json.dumps({"files": ["report.html"]}))
    check_replaceable(mine)  # one it wrote
    (mine / "notes.txt").write_text("mine, not the report's")
    with pytest.raises(UserError, match=r"files the report did not write \(notes.txt\)"):
        check_replaceable(mine)
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.parquet").write_text("")
    with pytest.raises(UserError, match="not a report directory"):
        check_replaceable(other)
    (tmp_path / "link").symlink_to(mine)
    with pytest.raises(UserError, match="symbolic link"):
        check_replaceable(tmp_path / "link")


def test_only_the_reports_marker_makes_a_folder_the_reports(tmp_path):
    """report.html and report.md beside files under data/ and plots/ are a user's folder unless
    the report's marker lists them; a marker that lists no files is not one. A rerun replaces
    the report's own directory, and keeps refusing once a user adds a file to it."""
    from pipeline.errors import UserError
    from pipeline.report.page import REPORT_MARKER, check_replaceable

    users = tmp_path / "users"
    for name in ("report.html", "report.md", "data/my-measurements.csv", "plots/my-figure.png"):
        (users / name).parent.mkdir(parents=True, exist_ok=True)
        (users / name).write_text("mine")
    with pytest.raises(UserError, match=rf"report --out {users} is not a report directory \(it has no {REPORT_MARKER} marker"):
        check_replaceable(users)
    for marker in ("[1]", json.dumps({"files": "report.html"}), json.dumps({"files": [["report.html"]]})):
        (users / REPORT_MARKER).write_text(marker)
        with pytest.raises(UserError, match="not a report directory"):
            check_replaceable(users)

    run = tmp_path / "run"  # a signals run: reportable without Ray
    run.mkdir()
    (run / "signals_summary.json").write_text(json.dumps(SIGNALS_SUMMARY))
    out = tmp_path / "report"
    ok(job("jobs.report", str(run), "--out", str(out)))
    ok(job("jobs.report", str(run), "--out", str(out)))  # its own directory: replaced
    (out / "data" / "my-notes.csv").write_text("mine")
    again = job("jobs.report", str(run), "--out", str(out))
    assert again.returncode == 2 and "files the report did not write (data/my-notes.csv)" in again.stderr
    assert (out / "data" / "my-notes.csv").read_text() == "mine"
