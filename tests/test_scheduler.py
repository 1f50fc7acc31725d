"""The scheduler on a real local Ray cluster: what is retried, what ends the run, and how
many tries a unit gets."""
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import ray.cloudpickle

from pipeline.errors import JobFailed, UserError
from pipeline.runtime.placement import restart_policy
from pipeline.runtime.scheduler import schedule

pytestmark = pytest.mark.ray  # starts Ray

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Unit:
    """Records each try as a file, then behaves as told."""

    name: str
    behaviour: str
    marks: str
    examples: tuple = ()

    @property
    def part_name(self) -> str:
        return f"part-{self.name}.parquet"

    def run(self, *_):
        tries = len(list(Path(self.marks).glob(f"{self.name}-*")))
        (Path(self.marks) / f"{self.name}-{tries}").touch()
        if self.behaviour == "user_error":
            raise UserError("feature width 12 does not match the α-predictor's 14")
        if self.behaviour == "bug":
            raise ValueError("boom")
        if self.behaviour == "kills_worker" or (self.behaviour == "kills_worker_once" and tries == 0):
            os._exit(1)
        return [{"unit": self.name}]


@ray.remote
class Worker:
    def run(self, unit):
        return unit.run()


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, num_gpus=0, log_to_driver=True)
    yield
    ray.shutdown()


def tries(marks: Path, name: str) -> int:
    return len(list(marks.glob(f"{name}-*")))


def run(units, marks):
    worker = Worker.options(num_cpus=0.5, **restart_policy(MAX_ATTEMPTS)).remote()
    done, log = {}, []
    retries = schedule([worker], [Unit(n, b, str(marks)) for n, b in units], lambda u, rows: done.update({u.name: rows}),
                       MAX_ATTEMPTS, log=log.append)
    return done, retries, log


def test_a_user_error_in_a_unit_ends_the_run_with_its_line_after_one_try(cluster, tmp_path):
    with pytest.raises(UserError) as err:
        run([("good", "ok"), ("bad", "user_error")], tmp_path)
    assert str(err.value) == "feature width 12 does not match the α-predictor's 14"
    assert tries(tmp_path, "bad") == 1


def test_a_bug_in_a_unit_ends_the_run_with_its_message_after_one_try(cluster, tmp_path):
    with pytest.raises(JobFailed, match="unit part-bad.parquet failed: ValueError: boom"):
        run([("bad", "bug")], tmp_path)
    assert tries(tmp_path, "bad") == 1


def test_a_unit_that_kills_its_worker_every_time_stops_after_max_attempts(cluster, tmp_path):
    with pytest.raises(JobFailed, match=f"failed {MAX_ATTEMPTS} times"):
        run([("deadly", "kills_worker")], tmp_path)
    assert tries(tmp_path, "deadly") == MAX_ATTEMPTS


def test_a_worker_death_is_retried_and_reported(cluster, tmp_path):
    done, retries, log = run([("a", "ok"), ("flaky", "kills_worker_once"), ("b", "ok")], tmp_path)
    assert sorted(done) == ["a", "b", "flaky"] and done["flaky"] == [{"unit": "flaky"}]
    # a unit queued on the same worker when it died is retried too (two units are in flight per worker)
    assert tries(tmp_path, "flaky") == 2 and tries(tmp_path, "b") <= 2 and retries >= 1
    assert any(line.startswith("retrying unit part-flaky.parquet (attempt 2 of 3) after worker death") for line in log)
