"""What a job may write, and which parts a resumed run trusts (pipeline/store)."""
import errno

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import JobFailed, UserError
from pipeline.store import parts
from pipeline.store.ownership import MARKER, claim_output
from pipeline.store.parts import existing_parts, filesystem, trusted_parts, write_part

SCHEMA = pa.schema([("x", pa.int64())])


def test_jobs_share_their_own_directory_and_refuse_anyone_elses(tmp_path):
    run = tmp_path / "run"
    claim_output(str(run), "evaluate")  # new
    claim_output(str(run), "label_alpha")  # written by this project: another job may add its own names
    assert (run / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    claim_output(str(tmp_path / "empty"), "evaluate")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")  # a user's own file of the same name
    with pytest.raises(UserError, match=r"holds files no job of this project wrote \(manifest.json"):
        claim_output(str(mine), "evaluate")
    assert (mine / "manifest.json").read_text() == "{}" and not (mine / MARKER).exists()
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / MARKER).write_text("[1]")
    with pytest.raises(UserError, match="is not this project's"):
        claim_output(str(tmp_path / "fake"), "evaluate")


def part(tmp_path, name, run, rows=1):
    fs, root = filesystem(str(tmp_path))
    write_part(fs, root, name, [{"x": i} for i in range(rows)], SCHEMA, run)
    return fs, root


def test_resume_keeps_only_this_runs_parts_and_sets_the_rest_aside(tmp_path):
    fs, root = part(tmp_path, "part-b000000.parquet", "run-a")
    part(tmp_path, "part-b000001.parquet", "run-b")  # another configuration, its manifest lost
    part(tmp_path, "part-b000009.parquet", "run-a")  # a name no unit of this run writes
    part(tmp_path, "benchmark=x/part-b000002.parquet", "run-a")
    (tmp_path / "benchmark=x" / "part-b000002.parquet").rename(tmp_path / "benchmark=x" / "part-b000003.parquet")
    said = []
    expected = {"part-b000000.parquet", "part-b000001.parquet", "benchmark=x/part-b000003.parquet"}
    kept = trusted_parts(fs, root, existing_parts(fs, root), expected, "run-a", log=said.append)
    assert kept == {"part-b000000.parquet"}
    assert any("part-b000001.parquet (written by another run or configuration)" in s and "runs again" in s for s in said)
    assert any("part-b000009.parquet (no unit of this run writes it)" in s for s in said)
    assert any("benchmark=x/part-b000003.parquet (written by another run" in s for s in said)  # renamed: its footer names b000002
    assert len(list((tmp_path / ".set-aside").iterdir())) == 3
    assert pq.read_table(tmp_path).num_rows == 1  # readers skip the hidden folder


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def disk_full(table, where, **kwargs):
        where.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parts.pq, "write_table", disk_full)
    fs, root = filesystem(str(tmp_path))
    with pytest.raises(JobFailed, match="No space left on device.*rerun the same command to resume"):
        write_part(fs, root, "part-b000000.parquet", [{"x": 1}], SCHEMA, "run")
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_naming_a_job_does_not_make_a_folder_ours(tmp_path):
    """Only the marker proves that this project wrote a directory: a user's own manifest.json
    or labels_manifest.json with a string "job" key is refused, and stays as it was."""
    import json

    for name, job in (("manifest.json", "evaluate"), ("labels_manifest.json", "label_alpha")):
        folder = tmp_path / name
        (folder / "results").mkdir(parents=True)
        text = json.dumps({"job": job, "status": "running"})
        (folder / name).write_text(text)
        with pytest.raises(UserError, match=rf"--out {folder} holds files no job of this project wrote .*no {MARKER}"):
            claim_output(str(folder), job)
        assert (folder / name).read_text() == text and not (folder / MARKER).exists()
    ours = tmp_path / "ours"  # this project's run: marked, resumed by any of its jobs
    claim_output(str(ours), "evaluate")
    (ours / "manifest.json").write_text(json.dumps({"job": "evaluate", "status": "running"}))
    claim_output(str(ours), "label_alpha")
    assert json.loads((ours / MARKER).read_text()) == {"jobs": ["evaluate", "label_alpha"]}
    (ours / MARKER).write_text(json.dumps({"jobs": [["evaluate"]]}))  # not a list of job names: not the marker
    with pytest.raises(UserError, match="is not this project's"):
        claim_output(str(ours), "evaluate")


def test_parts_from_before_footers_are_kept_when_the_manifest_vouches(tmp_path):
    fs, root = filesystem(str(tmp_path))
    write_part(fs, root, "part-b000000.parquet", [{"x": 1}], SCHEMA)  # no footer stamp: an older version's
    part = {"part-b000000.parquet"}
    assert trusted_parts(fs, root, part, part, "run", log=print, unstamped_ok=True) == part
    assert trusted_parts(fs, root, part, part, "run", log=print) == set()  # no manifest: set aside


def test_a_run_resumed_across_the_cost_columns_summarizes_its_older_parts_as_zero(tmp_path):
    """Parts written before `teacher_calls` (and `consultations`) existed read as nulls beside
    newer ones, and the summary counts their calls as 0 instead of failing."""
    from pipeline.config import StrategySpec
    from pipeline.store.parts import PartDataset
    from pipeline.store.schemas import RESULT_SCHEMA
    from pipeline.tasks.evaluate import SUMMARY_COLUMNS, summarize

    row = {"example_id": "e0", "strategy": "student", "correct": True, "teacher_tokens": 0, "teacher_tokens_processed": 0,
           "teacher_calls": 0, "latency_s": 0.1}
    new = pa.Table.from_pylist([{**row, "example_id": "e1", "teacher_calls": 2}], schema=RESULT_SCHEMA)
    old = new.drop(["teacher_calls", "consultations"]).set_column(0, "example_id", pa.array(["e0"]))
    pq.write_table(old, tmp_path / "part-b000000.parquet")
    pq.write_table(new, tmp_path / "part-b000001.parquet")
    fs, root = filesystem(str(tmp_path))
    table = PartDataset(fs, root).read(SUMMARY_COLUMNS, RESULT_SCHEMA)
    assert sorted(table.column("teacher_calls").to_pylist(), key=str) == [2, None]
    [entry] = summarize(table, [StrategySpec("student")])["strategies"]
    assert entry["n"] == 2 and entry["teacher_calls_per_example"] == 1.0
