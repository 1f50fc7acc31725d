"""Which Ray cluster a job uses: its own, unless RAY_ADDRESS names one (pipeline/runtime/cluster.py)."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray  # starts Ray

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import ray
from pipeline.runtime.cluster import connect
connect()
print("agent port", ray._private.worker.global_worker.node.dashboard_agent_listen_port)
"""


def test_a_job_starts_its_own_cluster_whatever_ray_remembers(tmp_path):
    """A stale address in Ray's ray_current_cluster file (a killed head's) is not tried, the
    token stays out of ~/.ray, and the dashboard agent does not take the port every
    `ray start` head on the machine wants."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live under it
    (ray_tmp / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens there
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home), "RAY_TMPDIR": str(ray_tmp)}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "started a local Ray cluster for this job" in done.stdout
    port = int(done.stdout.split("agent port")[1])
    assert port != 52365 and "127.0.0.1:9" not in done.stdout + done.stderr
    assert not (home / ".ray").exists()
