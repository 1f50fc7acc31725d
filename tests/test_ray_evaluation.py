"""Distributed evaluation on real Ray clusters (local, multi-node simulated, job submission)."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from pipeline.config import load_config
from pipeline.decoding.decoder import Decoder
from pipeline.errors import UserError
from pipeline.tasks.evaluate import decode_unit, make_units
from pipeline.data.datasets import load_examples
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.data.prompts import load_template
from pipeline.store.schemas import RESULT_SCHEMA
from pipeline.tasks.evaluate import run_evaluation
from pipeline.runtime.placement import run_stop_rule, start_decoders

pytestmark = pytest.mark.ray  # starts Ray

REPO = Path(__file__).resolve().parents[1]
N_EXAMPLES = 10
STRATEGIES = [
    {"name": "student"},
    {"name": "fixed_alpha", "alpha": 2.0, "n_tokens": 2},
    {"name": "switch", "tau0": 0.3, "lam": 0.1},
    {"name": "budget", "k": 2, "threshold": 0.5, "signal": "margin", "alpha": 2.0},
]


@pytest.fixture(scope="module")
def config_file(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("raycfg")
    data = root / "tiny.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} plus {i + 1}?", "answer": str(2 * i + 1)}) + "\n" for i in range(N_EXAMPLES)))
    raw = {
        "student": {"path": str(tiny_pair[0])},
        "teacher": {"path": str(tiny_pair[1])},
        "dataset": {"source": str(data), "name": "tiny", "split": "test", "answer_format": "plain"},
        "prompt": "gsm8k_cot_8shot",
        "decoding": {"max_new_tokens": 8, "batch_size": 2},
        "strategies": STRATEGIES,
        "ray": {"num_students": 2, "students_per_teacher": 2, "student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def ray_with_two_gpus():
    ray.init(address="local", num_cpus=2, num_gpus=2, log_to_driver=True)
    yield
    ray.shutdown()


@pytest.fixture
def ray_without_gpus():
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=True, log_to_driver=True)
    yield
    ray.shutdown()


def read_rows(out):
    return pq.read_table(Path(out) / "results").to_pylist()


def single_process_rows(config):
    """The same units decoded in this process, without Ray."""
    student, teacher = load_model(config.student), load_model(config.teacher)
    vocab = shared_vocab_size(model_facts(config.student), model_facts(config.teacher))
    template = load_template(config.prompt)
    from pipeline.engine.hf import HFEngine

    decoder = Decoder(
        HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
        run_stop_rule(config),  # the job's own rule
    )
    examples = load_examples(config.dataset)
    units = make_units(config.strategies, examples, config.decoding.batch_size, config.dataset.name, config.dataset.split)
    return [row for unit in units for row in decode_unit(decoder, template, unit)]


def keyed(rows, fields=("generated_text", "correct", "teacher_tokens", "student_tokens_processed", "teacher_tokens_processed")):
    return {(r["example_id"], r["strategy"]): tuple(r[f] for f in fields) for r in rows}


def test_actors_get_distinct_logical_gpus_and_fall_back_to_cpu(ray_with_two_gpus, config_file):
    config = load_config(str(config_file), ["ray.num_students=1", "ray.students_per_teacher=1"])
    fleet = start_decoders(config, shared_vocab_size(model_facts(config.student), model_facts(config.teacher)))
    t_place, s_place = ray.get([fleet.teachers[0].placement.remote(), fleet.workers[0].placement.remote()])
    assert len(t_place["gpu_ids"]) == 1 and len(s_place["gpu_ids"]) == 1
    assert t_place["gpu_ids"] != s_place["gpu_ids"]
    assert t_place["device"] == s_place["device"] == "cpu"  # logical GPUs, no CUDA device here


def test_unplaceable_actors_fail_with_a_clear_error(ray_with_two_gpus, config_file):
    config = load_config(str(config_file), ["ray.student.num_gpus=2", "ray.placement_timeout_s=3"])
    with pytest.raises(UserError, match="could not place"):
        start_decoders(config, shared_vocab_size(model_facts(config.student), model_facts(config.teacher)))


def test_declared_memory_beyond_the_node_is_refused_at_placement(ray_with_two_gpus, config_file):
    config = load_config(str(config_file), ["ray.placement_timeout_s=3"])
    vocab = shared_vocab_size(model_facts(config.student), model_facts(config.teacher))
    with pytest.raises(UserError, match="could not place.*memory_gb"):
        start_decoders(config, vocab, {"student": 2**50, "teacher": 2**30})


def test_teacher_and_student_land_on_different_gpu_nodes(config_file):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=True)
    try:
        config = load_config(str(config_file), ["ray.num_students=1", "ray.student.num_cpus=1", "ray.teacher.num_cpus=1"])
        fleet = start_decoders(config, shared_vocab_size(model_facts(config.student), model_facts(config.teacher)))
        t_place, s_place = ray.get([fleet.teachers[0].placement.remote(), fleet.workers[0].placement.remote()])
        assert t_place["node_id"] != s_place["node_id"]
        assert t_place["gpu_ids"] and s_place["gpu_ids"]
    finally:
        ray.shutdown()
        cluster.shutdown()


def held_config(config_file: Path, tmp_path: Path, after: int) -> tuple[Path, Path]:
    """The config with `hold_plugin:hold` added (tests/hold_plugin): from each worker's
    `after`-th batch on, a unit waits while the returned HOLD file exists."""
    hold = tmp_path / "HOLD"
    hold.touch()
    raw = yaml.safe_load(config_file.read_text())
    raw["strategies"] = [*raw["strategies"], {"name": "hold_plugin:hold", "path": str(hold), "after": after}]
    path = tmp_path / "held.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, hold


def wait_for(condition, what: str, limit_s: float = 300) -> None:
    """Polls until `condition()`; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def held_units(tmp_path: Path) -> int:
    return len(list(tmp_path.glob("HOLD.waiting.*")))


@pytest.fixture
def plugin_path(monkeypatch):
    """Ray's workers (they inherit this environment) and job subprocesses import tests/hold_plugin."""
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])))
    return os.environ.copy()


@pytest.mark.parametrize("victim", ["DecodeWorker", "ModelActor"])
def test_killed_worker_is_restarted_and_run_equals_single_process(plugin_path, ray_without_gpus, config_file, tmp_path, capsys, victim):
    """A student worker or the teacher is killed while a unit is in flight (held by a file,
    not by timing): the units it failed wait for it to come back and are retried once
    each, and the rows equal one process's."""
    held, hold = held_config(config_file, tmp_path, after=1)
    config = load_config(str(held))
    out = tmp_path / "run"
    killed = []
    gcs_address = ray.get_runtime_context().gcs_address  # this test's cluster, whatever else runs here

    def kill_while_a_unit_is_held():
        from ray.util.state import list_actors

        try:
            wait_for(lambda: held_units(tmp_path) > 0, "a unit is held")
            alive = list_actors(address=gcs_address, filters=[("class_name", "=", victim), ("state", "=", "ALIVE")])
            os.kill(alive[0].pid, signal.SIGKILL)
            killed.append(alive[0].pid)
        finally:
            hold.unlink()

    killer = threading.Thread(target=kill_while_a_unit_is_held, daemon=True)
    killer.start()
    summary = run_evaluation(config, str(out))
    killer.join(timeout=5)
    assert killed, "the test did not kill a worker"

    rows = read_rows(out)
    n_strategies = len(config.strategies)
    assert len(rows) == N_EXAMPLES * n_strategies
    assert len({(r["example_id"], r["strategy"]) for r in rows}) == len(rows)
    assert keyed(rows) == keyed(single_process_rows(config))
    assert [s["n"] for s in summary["strategies"]] == [N_EXAMPLES] * n_strategies
    [oracle] = summary["oracle"]  # the best of the student and the fixed α per example
    assert oracle["accuracy"] >= max(s["accuracy"] for s in summary["strategies"] if s["name"] in ("student", "fixed_alpha"))
    assert pq.read_schema(next((out / "results").glob("part-*.parquet"))).remove_metadata() == RESULT_SCHEMA
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["rows"] == len(rows)
    # one death: each unit it failed (at most two in flight per worker) is tried once more
    assert 1 <= manifest["retried_units"] <= 2 * config.ray.num_students
    assert "attempt 3 of" not in capsys.readouterr().out

    with pytest.raises(UserError, match="another configuration"):
        run_evaluation(load_config(str(held), ["decoding.max_new_tokens=9"]), str(out))


def test_sigterm_ends_the_run_in_one_line_and_the_rerun_resumes(plugin_path, config_file, tmp_path):
    held, hold = held_config(config_file, tmp_path, after=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jobs.evaluate", "--config", str(held), "--out", str(out), "--set", "ray.num_students=1"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_path)
    try:
        wait_for(lambda: held_units(tmp_path) > 0 or driver.poll() is not None, "the second unit is held")
        driver.send_signal(signal.SIGTERM)
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        hold.unlink()
    assert driver.returncode == 130, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert errors[0].startswith("error: interrupted after ") and errors[0].endswith("work units; rerun the same command to resume")
    assert not (out / ".run.lock").exists()
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=plugin_path)
    assert resumed.returncode == 0 and "work units already done" in resumed.stdout, resumed.stderr[-2000:]
    assert len(read_rows(out)) == N_EXAMPLES * (len(STRATEGIES) + 1)


def test_rerun_after_killed_driver_finishes_without_recomputing(plugin_path, config_file, tmp_path):
    held, hold = held_config(config_file, tmp_path, after=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jobs.evaluate", "--config", str(held), "--out", str(out), "--set", "ray.num_students=1"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=plugin_path)
    try:  # three units written, the fourth held: the one worker's next unit waits behind it
        wait_for(lambda: (held_units(tmp_path) > 0 and len(list((out / "results").glob("part-*"))) == 3) or driver.poll() is not None,
                 "three units are written and the fourth is held")
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
        driver.wait()
    finally:
        hold.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("part-*")}
    units = N_EXAMPLES // 2  # batches of 2, every strategy in each
    assert len(before) == 3
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=plugin_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"3 of {units} work units already done" in done.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("part-*")}
    assert {k: after[k] for k in before} == before  # finished parts untouched
    rows = read_rows(out)
    assert len(rows) == N_EXAMPLES * (len(STRATEGIES) + 1)
    assert len({(r["example_id"], r["strategy"]) for r in rows}) == len(rows)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_end_to_end(config_file, tmp_path):
    """The cluster commands of docs/cluster.md: a token-authenticated cluster, job submit with the token."""
    # the token goes to a HOME of this test's own, never the user's ~/.ray
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    gcs, dash, agent = _free_port(), _free_port(), _free_port()
    # ports of its own: 52365, the agent's default, may be taken by another head on the machine
    start = ["ray", "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
             f"--dashboard-agent-listen-port={agent}", "--num-cpus=2",
             "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", "--disable-usage-stats"]
    # a head of this test's own, in its own process group: ending it ends no one else's Ray
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", dash)) == 0:
                    break
            assert head.poll() is None and time.monotonic() < deadline, "the test's Ray head did not start"
            time.sleep(1)
        out = tmp_path / "submitted"
        submit = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO), "--",
                  "python", "-m", "jobs.evaluate", "--config", str(config_file), "--out", str(out)]
        job = submit_when_agent_is_up(submit, env)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        table = pq.read_table(out / "results")
        assert table.schema.remove_metadata() == RESULT_SCHEMA
        assert table.num_rows == N_EXAMPLES * len(STRATEGIES)
        assert "accuracy" in job.stdout
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["source_sha256"]  # the code version, though .git is not uploaded

        relative = subprocess.run(submit[:-1] + ["relative-out"], env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
        assert relative.returncode != 0 and "is relative" in relative.stdout + relative.stderr

        # a local run beside this head (for it, another user's cluster) neither joins nor ends it
        beside = local_run(env, config_file, tmp_path / "beside")
        assert f":{gcs}" not in beside.stdout + beside.stderr and head.poll() is None
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
    # the dead head's address stays in Ray's ray_current_cluster file: a local run must not try it
    local_run(env, config_file, tmp_path / "after")


def submit_when_agent_is_up(submit: list, env: dict) -> subprocess.CompletedProcess:
    """The head's dashboard answers before its job agent does (a minute later on a loaded
    2-core machine): Ray then refuses the submission with "No available agent"; try again."""
    deadline = time.monotonic() + 180
    while True:
        job = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
        if "No available agent to submit job" not in job.stderr or time.monotonic() > deadline:
            return job
        time.sleep(3)


def local_run(env: dict, config_file, out) -> subprocess.CompletedProcess:
    """`python -m jobs.evaluate` with no RAY_ADDRESS: it starts and ends a cluster of its own."""
    cmd = [sys.executable, "-m", "jobs.evaluate", "--config", str(config_file), "--out", str(out)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "started a local Ray cluster for this job" in done.stdout
    return done


def teacher_steps(out) -> dict:
    return json.loads((out / "manifest.json").read_text())["sessions"][-1]["teacher_steps"]


def test_students_sharing_a_teacher_have_their_steps_batched(plugin_path, ray_without_gpus, tmp_path):
    """The demo's two students on one teacher: it runs fewer forwards than the feeds it is sent,
    and the rows equal the single-process decode and those of one teacher per student.

    The students meet at a barrier before their first teacher step (tests/hold_plugin: by
    files, not by timing), and a wide window keeps their steps together from there. On the
    demo's peaked distributions a batched forward's float rounding (~1e-6) flips no token; on
    flat ones it can, at near-ties, so `teacher_batch_steps: false` must give rows identical to
    one process whatever the models (checked on tiny random ones below)."""
    # SWITCH consults the teacher at every step
    demo = [f"dataset.source={REPO / 'demo_world/data/test.jsonl'}", "dataset.limit=100", "decoding.batch_size=25",
            "strategies=[{name: fixed_alpha, alpha: 1.0, n_tokens: 2}, {name: switch, tau0: 0.1, lam: 0.1}]"]
    meet = f"{{name: 'hold_plugin:meet', path: '{tmp_path / 'MEET'}', workers: 2}}"
    met = [*demo[:3], f"strategies=[{{name: fixed_alpha, alpha: 1.0, n_tokens: 2}}, {{name: switch, tau0: 0.1, lam: 0.1}}, {meet}]"]
    shared = load_config(str(REPO / "configs/demo.yaml"), [*met, "ray.teacher_batch_wait_s=1"])
    assert (shared.ray.num_students, shared.ray.num_teachers) == (2, 1)
    run_evaluation(shared, str(tmp_path / "shared"))
    assert len(list(tmp_path.glob("MEET.*"))) == 2
    steps = teacher_steps(tmp_path / "shared")
    assert 0 < steps["forwards"] < steps["calls"]
    own = single_process_rows(load_config(str(REPO / "configs/demo.yaml"), demo))
    ran = [r for r in read_rows(tmp_path / "shared") if not r["strategy"].startswith("hold_plugin")]
    assert keyed(ran) == keyed(own)

    alone = load_config(str(REPO / "configs/demo.yaml"), [*demo, "ray.students_per_teacher=1"])
    run_evaluation(alone, str(tmp_path / "alone"))
    steps = teacher_steps(tmp_path / "alone")
    assert steps["forwards"] == steps["calls"] > 0
    assert keyed(read_rows(tmp_path / "alone")) == keyed(ran)


def test_a_shared_teacher_without_batching_gives_the_single_process_rows(ray_without_gpus, config_file, tmp_path):
    config = load_config(str(config_file), ["decoding.max_new_tokens=40", "ray.teacher_batch_steps=false"])
    assert config.ray.num_teachers == 1 < config.ray.num_students
    run_evaluation(config, str(tmp_path / "unbatched"))
    steps = teacher_steps(tmp_path / "unbatched")
    assert steps["forwards"] == steps["calls"] > 0
    assert keyed(read_rows(tmp_path / "unbatched")) == keyed(single_process_rows(config))


def test_a_student_backend_named_in_the_config_runs_in_the_workers(plugin_path, ray_without_gpus, config_file, tmp_path):
    """`student.backend: plain_backend:plain` (tests/plain_backend): the workers build that
    engine, whose continuations go through `generate`, and the rows are the default engine's."""
    config = load_config(str(config_file), ["ray.num_students=1"])
    plain = load_config(str(config_file), ["ray.num_students=1", "student.backend=plain_backend:plain"])
    run_evaluation(plain, str(tmp_path / "plain"))
    fields = ("generated_text", "correct", "teacher_tokens", "teacher_tokens_processed", "generated_token_ids")
    plain_rows, own_rows = read_rows(tmp_path / "plain"), single_process_rows(config)
    assert keyed(plain_rows, fields) == keyed(own_rows, fields)
    # the plain backend recomputes prompt and prefix for each continuation: it was the one used
    assert sum(r["student_tokens_processed"] for r in plain_rows) > sum(r["student_tokens_processed"] for r in own_rows)
    with pytest.raises(UserError, match="unknown backend 'vllm'"):
        run_evaluation(load_config(str(config_file), ["teacher.backend=vllm"]), str(tmp_path / "vllm"))
