"""The job kit: a distributed job over work units, shared by evaluate, label and signals.

A task describes its units (`WorkUnit`), the Parquet dataset they fill and the rows it
expects; `run_units` starts the actors, runs only the units not already in `--out`
(resume), writes each unit's rows as an atomic part, and keeps the manifest.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import ray
from tqdm import tqdm

from pipeline.config import RunConfig
from pipeline.data.datasets import Example, dataset_fingerprint
from pipeline.data.prompts import PromptTemplate
from pipeline.errors import UserError
from pipeline.models.facts import check_budget, model_facts, shared_vocab_size
from pipeline.runtime.cluster import connect
from pipeline.runtime.placement import start_decoders
from pipeline.runtime.scheduler import schedule
from pipeline.store import lock
from pipeline.store.manifest import check_compatible, code_version, config_hash, now, package_versions, resume_key
from pipeline.store.parts import (
    check_output_location, create_root, existing_parts, filesystem, join, read_dataset, read_json, write_json, write_part,
)


class WorkUnit(Protocol):
    """One batch of a job: the unit of scheduling, output (one Parquet part) and resume."""

    examples: tuple[Example, ...]

    @property
    def part_name(self) -> str: ...

    def run(self, decoder, template: PromptTemplate, worker_id: str, node_id: str) -> list[dict]: ...


def batches(examples: Sequence[Example], size: int) -> list[tuple[int, tuple[Example, ...]]]:
    """(batch index, examples) in order: deterministic for a config, so a rerun finds its parts."""
    return [(b, tuple(examples[s : s + size])) for b, s in enumerate(range(0, len(examples), size))]


@dataclass
class Job:
    """One distributed job over work units: where its dataset goes and what it expects."""

    name: str  # recorded in the manifest
    dataset_dir: str  # subdirectory of --out holding the Parquet parts
    schema: pa.Schema
    units: list  # WorkUnit
    expected_rows: int
    manifest_name: str = "manifest.json"
    ignored_config: tuple[str, ...] = ()  # config sections that do not affect this job's output
    extra_actors: Callable[[int], object] | None = None  # starts actors the units use (given the shared vocab size)
    # called with the units to run, returns a callback (unit, rows) -> a line to print, or None
    # (e.g. evaluate's line per strategy as its last unit arrives)
    tally: Callable[[list], Callable[[object, list[dict]], str | None]] | None = None


def run_units(config: RunConfig, out: str, job: Job, examples: list) -> tuple[pa.Table, dict]:
    """Run every unit not already in `out` on Ray actors; returns the whole dataset and the manifest.

    Reruns resume: finished parts are kept, missing ones are computed. Rows of another
    configuration, dataset or checkpoint into the same `out` are refused; one run at a
    time holds `out` (a lock released by `finish`).
    """
    check_output_location(out)
    student, teacher = model_facts(config.student), model_facts(config.teacher)
    vocab_size = shared_vocab_size(student, teacher)
    check_budget(config.decoding.max_new_tokens, student, teacher)
    beyond = [i for i in config.decoding.stop_token_ids if i >= vocab_size]
    if beyond:
        raise UserError(f"decoding.stop_token_ids {beyond} are not in the shared vocabulary ({vocab_size} tokens)")
    fs, root = filesystem(out)
    create_root(fs, root, out)
    lock.acquire(fs, root, out)
    try:
        return _run_locked(config, out, job, examples, fs, root, vocab_size, {"student": student.identity, "teacher": teacher.identity})
    except BaseException:
        lock.release(fs, root)
        raise


def _run_locked(config, out, job, examples, fs, root, vocab_size, identities) -> tuple[pa.Table, dict]:
    data_dir, manifest_path = join(root, job.dataset_dir), join(root, job.manifest_name)
    key = resume_key(config_hash(config.results_key(job.ignored_config)), dataset_fingerprint(examples), identities)
    previous = read_json(fs, manifest_path)
    done = existing_parts(fs, data_dir)
    check_compatible(previous, key, out, has_rows=bool(done))
    manifest = {
        "job": job.name,
        "status": "running",
        "config": config.to_dict(),
        **key,
        "models": {"student": config.student.path, "teacher": config.teacher.path},
        "dataset": {"source": config.dataset.source, "split": config.dataset.split, "n_examples": len(examples),
                    "fingerprint": key["dataset_fingerprint"]},
        "versions": package_versions(),
        **code_version(),
        "started_at": (previous or {}).get("started_at", now()),
        "sessions": (previous or {}).get("sessions", []),  # one entry per run of the command into this --out
        "actors": (previous or {}).get("actors"),
    }
    if (previous or {}).get("status") == "complete":  # a rerun keeps the first completed run's timing
        manifest.update(finished_at=previous.get("finished_at"),
                        wall_s=previous.get("wall_s", previous.get("wall_s_this_session")))
    write_json(fs, manifest_path, manifest)
    session = {"started_at": now()}

    todo = [u for u in job.units if u.part_name not in done]
    print(f"{len(job.units) - len(todo)} of {len(job.units)} work units already done; {len(todo)} to run", flush=True)
    started, retries = time.time(), 0
    if todo:
        connect()
        # the driver holds every handle until the end: Ray ends an actor when no handle is left
        teachers, workers = start_decoders(config, vocab_size)
        actors = actor_facts(teachers, workers)
        check_same_dtypes((previous or {}).get("actors"), actors, out, has_rows=bool(done))
        manifest["actors"] = actors or manifest["actors"]
        extras = job.extra_actors(vocab_size) if job.extra_actors is not None else None
        tally = job.tally(todo) if job.tally is not None else None
        with tqdm(total=sum(len(u.examples) for u in todo), unit="ex", desc=job.name) as bar:
            live = LiveTokens(workers, bar)

            def write(unit, rows):
                write_part(fs, data_dir, unit.part_name, rows, job.schema)
                bar.update(len(unit.examples))
                live.poll()
                line = tally(unit, rows) if tally is not None else None
                if line:
                    tqdm.write(line)
            retries = schedule(workers, todo, write, config.ray.max_attempts, log=tqdm.write, on_wait=live.poll)
        del teachers, workers, extras

    table = read_dataset(fs, data_dir)
    if table.num_rows != job.expected_rows:
        raise UserError(f"{out}: {job.dataset_dir} holds {table.num_rows} rows, expected {job.expected_rows}; rerun to finish")
    session.update(finished_at=now(), wall_s=round(time.time() - started, 3), units_run=len(todo), retried_units=retries)
    manifest["sessions"].append(session)
    manifest.setdefault("finished_at", session["finished_at"])
    manifest.setdefault("wall_s", session["wall_s"])
    manifest.update(counts={"rows": table.num_rows, "examples": len(examples)},
                    retried_units=sum(s.get("retried_units", 0) for s in manifest["sessions"]))
    return table, manifest


class LiveTokens:
    """The progress bar's count of tokens the students were fed, read from the workers while
    their units run (at most once a second). A restarted worker counts from zero again: its
    count restarts from its new value."""

    def __init__(self, workers: list, bar: tqdm):
        self.workers, self.bar = workers, bar
        self.t0 = self.last = time.monotonic()
        self.seen: list[int | None] = [None] * len(workers)
        self.done = 0
        self._read()

    def _read(self) -> bool:
        try:
            counts = [p["student_tokens"] for p in ray.get([w.progress.remote() for w in self.workers], timeout=5)]
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):  # a worker restarting: next time
            return False
        for i, count in enumerate(counts):
            before = self.seen[i]
            if before is not None and count >= before:
                self.done += count - before
            self.seen[i] = count
        return True

    def poll(self) -> None:
        if time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        if self._read():
            self.bar.set_postfix_str(f"{self.done:,} student tokens, {self.done / max(self.last - self.t0, 1e-9):,.0f} tok/s")


def actor_facts(teachers: list, workers: list) -> list[dict] | None:
    """Where each actor runs and with which dtype (what `dtype: auto` resolved to); None when
    an actor cannot answer (the scheduler then reports the failure as it does for units)."""
    try:
        facts = ray.get([a.placement.remote() for a in teachers + workers])
    except ray.exceptions.RayError:
        return None
    return [{"role": "teacher" if i < len(teachers) else "student", **{k: f[k] for k in ("node_id", "device", "dtype")}}
            for i, f in enumerate(facts)]


def check_same_dtypes(before: list[dict] | None, now: list[dict] | None, out: str, has_rows: bool) -> None:
    """Rows of a resumed run come from models in the same dtype as the rows already there
    (`dtype: auto` may resolve differently on another machine)."""
    if not (before and now and has_rows):
        return
    was = {(a["role"], a["dtype"]) for a in before}
    is_ = {(a["role"], a["dtype"]) for a in now}
    if was != is_:
        raise UserError(f"{out}: its rows were decoded with {sorted(was)}, this run's actors use {sorted(is_)}; "
                        "set the models' dtype explicitly, or write into a new --out")


def finish(out: str, job: Job, manifest: dict, summary_name: str, summary: dict) -> None:
    """Write the job's summary, then mark the manifest complete (last, so 'complete' means complete)."""
    fs, root = filesystem(out)
    write_json(fs, join(root, summary_name), summary)
    manifest.update(status="complete", summary=summary)
    write_json(fs, join(root, job.manifest_name), manifest)
    lock.release(fs, root)
