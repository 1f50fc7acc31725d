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

from pipeline.config import DatasetSpec, RunConfig
from pipeline.data.datasets import Example, dataset_fingerprint
from pipeline.data.prompts import PromptTemplate
from pipeline.engine.backends import backend_factory
from pipeline.errors import Interrupted, UserError
from pipeline.models.facts import check_budget, model_facts, shared_vocab_size
from pipeline.runtime.cluster import connect
from pipeline.runtime.memory import declared_memory
from pipeline.runtime.placement import start_decoders
from pipeline.runtime.prompt_fit import check_prompts_fit
from pipeline.runtime.prompting import run_chat
from pipeline.runtime.resources import cluster_has_gpus
from pipeline.runtime.scheduler import schedule
from pipeline.store import lock
from pipeline.store.manifest import check_compatible, code_version, config_hash, now, package_versions, resume_key
from pipeline.store.ownership import claim_output
from pipeline.store.parts import (
    PartDataset, existing_parts, filesystem, join, read_json, trusted_parts, write_json, write_part,
)


class WorkUnit(Protocol):
    """One batch of a job: the unit of scheduling, output (one Parquet part) and resume.

    A unit may also have a `prompt` (a template name): the worker then encodes it with that
    template and its stop strings instead of the run's (a run over several benchmarks)."""

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


def run_units(config: RunConfig, out: str, job: Job, examples: list,
              per_dataset: Sequence[tuple[DatasetSpec, Sequence[Example]]] = ()) -> tuple[PartDataset, dict]:
    """Run every unit not already in `out` on Ray actors; returns the dataset (read as far as
    the caller asks) and the manifest. `examples` are every dataset's; `per_dataset` says which
    came from which (default: all from `config.dataset`), for the manifest.

    Reruns resume: finished parts are kept, missing ones are computed. Rows of another
    configuration, dataset or checkpoint into the same `out` are refused; one run at a
    time holds `out` (a lock released by `finish`).
    """
    for role, spec in (("student", config.student), ("teacher", config.teacher)):
        backend_factory(spec.backend, f"{role}.backend")  # an unknown backend fails before Ray starts
    student, teacher = model_facts(config.student), model_facts(config.teacher)
    vocab_size = shared_vocab_size(student, teacher)
    check_budget(config.decoding.max_new_tokens, student, teacher)
    longest_prompt = check_prompts_fit(config.student, job.units, config.default_prompt, config.decoding.max_new_tokens,
                                       student, teacher, chat=run_chat(config))
    beyond = [i for i in config.decoding.stop_token_ids if i >= vocab_size]
    if beyond:
        raise UserError(f"decoding.stop_token_ids {beyond} are not in the shared vocabulary ({vocab_size} tokens)")
    fs, root = claim_output(out, job.name)
    lock.acquire(fs, root, out)
    try:
        return _run_locked(config, out, job, examples, per_dataset or [(config.dataset, examples)], fs, root, vocab_size,
                           (student, teacher), longest_prompt)
    except BaseException:
        lock.release(fs, root)
        raise


def dataset_facts(spec: DatasetSpec, examples: Sequence[Example]) -> dict:
    return {"source": spec.source, "split": spec.split, "n_examples": len(examples), "fingerprint": dataset_fingerprint(examples)}


def manifest_datasets(config: RunConfig, per_dataset: Sequence[tuple[DatasetSpec, Sequence[Example]]]) -> dict:
    """`dataset` for a run over one (as runs always recorded it), `datasets` for a `datasets` list."""
    if not config.datasets:
        [(spec, examples)] = per_dataset
        return {"dataset": dataset_facts(spec, examples)}
    return {"datasets": [{"name": spec.name, **dataset_facts(spec, examples)} for spec, examples in per_dataset]}


def _run_locked(config, out, job, examples, per_dataset, fs, root, vocab_size, models, longest_prompt) -> tuple[PartDataset, dict]:
    data_dir, manifest_path = join(root, job.dataset_dir), join(root, job.manifest_name)
    identities = {"student": models[0].identity, "teacher": models[1].identity}
    key = resume_key(config_hash(config.results_key(job.ignored_config)), dataset_fingerprint(examples), identities)
    previous = read_json(fs, manifest_path)
    present = existing_parts(fs, data_dir)
    check_compatible(previous, key, out, has_rows=bool(present))
    run = config_hash(key)  # in every part's footer: resume keeps only this run's parts
    # parts from before footers were stamped: the manifest (checked just above) vouches for them
    done = trusted_parts(fs, data_dir, present, {u.part_name for u in job.units}, run, unstamped_ok=previous is not None)
    manifest = {
        "job": job.name,
        "status": "running",
        "config": config.to_dict(),
        **key,
        "models": {"student": config.student.path, "teacher": config.teacher.path},
        **manifest_datasets(config, per_dataset),
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
        memory = declared_memory(config, *models, longest_prompt, cluster_has_gpus())
        fleet = start_decoders(config, vocab_size, memory)
        extras = None
        try:
            teachers, workers = fleet.teachers, fleet.workers
            actors = actor_facts(teachers, workers)
            check_same_dtypes((previous or {}).get("actors"), actors, out, has_rows=bool(done))
            manifest["actors"] = actors or manifest["actors"]
            extras = job.extra_actors(vocab_size) if job.extra_actors is not None else None
            retries = write_units(job, todo, fleet, config.ray.max_attempts, lambda unit, rows: write_part(
                fs, data_dir, unit.part_name, rows, job.schema, run))
            session["teacher_steps"] = teacher_batching(teachers)
        finally:
            fleet.release()
            if extras is not None:
                ray.kill(extras)

    data = PartDataset(fs, data_dir)
    rows = data.count_rows()
    if rows != job.expected_rows:
        raise UserError(f"{out}: {job.dataset_dir} holds {rows} rows, expected {job.expected_rows}; rerun to finish")
    session.update(finished_at=now(), wall_s=round(time.time() - started, 3), units_run=len(todo), retried_units=retries)
    manifest["sessions"].append(session)
    manifest.setdefault("finished_at", session["finished_at"])
    manifest.setdefault("wall_s", session["wall_s"])
    manifest.update(counts={"rows": rows, "examples": len(examples)},
                    retried_units=sum(s.get("retried_units", 0) for s in manifest["sessions"]))
    return data, manifest


def write_units(job: Job, todo: list, fleet, max_attempts: int, write: Callable[[object, list], None]) -> int:
    """Runs `todo` on the fleet's workers, writing each unit's rows as they come back, under a
    progress bar with the job's running tally; the number of retried units."""
    tally = job.tally(todo) if job.tally is not None else None
    finished = len(job.units) - len(todo)
    with tqdm(total=sum(len(u.examples) for u in todo), unit="ex", desc=job.name) as bar:
        live = LiveTokens(fleet.workers, fleet.teachers, bar)

        def written(unit, rows):
            nonlocal finished
            write(unit, rows)
            finished += 1
            bar.update(len(unit.examples))
            live.poll()
            line = tally(unit, rows) if tally is not None else None
            if line:
                tqdm.write(line)
        try:
            retries = schedule(fleet.workers, todo, written, max_attempts, log=tqdm.write, on_wait=live.poll,
                               ready=lambda worker: worker.ready.remote())
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted after {finished} of {len(job.units)} work units") from None
        live.poll(every_s=0)  # the bar's last figure counts every unit
    return retries


class ActorCounter:
    """A sum of one counter over several actors, read without ever waiting on them: a poll
    takes the answers that have arrived and asks again. An actor restarted from zero
    counts from zero again."""

    def __init__(self, actors: list, ask: Callable[[object], object]):
        self.actors, self.ask = actors, ask
        self.seen = [0] * len(actors)
        self.total = 0
        self.asked = [ask(a) for a in actors]

    def poll(self) -> None:
        ready, _ = ray.wait(self.asked, num_returns=len(self.asked), timeout=0)
        if len(ready) < len(self.asked):
            return
        try:
            counts = ray.get(self.asked)
        except ray.exceptions.RayError:  # an actor restarting: ask again
            counts = None
        self.asked = [self.ask(a) for a in self.actors]
        for i, count in enumerate(counts or []):
            self.total += count - self.seen[i] if count >= self.seen[i] else count
            self.seen[i] = count


class LiveTokens:
    """The progress bar's count of the tokens both models were fed, read from the actors while
    units run (at most once a second), so the bar moves while the teacher works too."""

    def __init__(self, workers: list, teachers: list, bar: tqdm):
        self.bar = bar
        self.student = ActorCounter(workers, lambda w: w.student_tokens.remote())
        self.teacher = ActorCounter(teachers, lambda t: t.tokens_processed.remote())
        self.t0 = self.last = time.monotonic()

    def poll(self, every_s: float = 1.0) -> None:
        if time.monotonic() - self.last < every_s:
            return
        self.last = time.monotonic()
        self.student.poll()
        self.teacher.poll()
        rate = (self.student.total + self.teacher.total) / max(self.last - self.t0, 1e-9)
        self.bar.set_postfix_str(f"tokens fed: {self.student.total:,} student, {self.teacher.total:,} teacher, {rate:,.0f} tok/s")


def teacher_batching(teachers: list) -> dict | None:
    """Feeds (steps and catch-ups) the teachers received this run and the forwards they ran for
    them: fewer forwards than feeds when students sharing a teacher had theirs batched."""
    try:
        counts = ray.get([t.batching.remote() for t in teachers], timeout=30)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):  # a teacher restarted: its counts are gone
        return None
    return {"calls": sum(c["feed_calls"] for c in counts), "forwards": sum(c["feed_forwards"] for c in counts)}


def actor_facts(teachers: list, workers: list) -> list[dict] | None:
    """Where each actor runs and with which dtype (what `dtype: auto` resolved to); None when
    an actor cannot answer (the scheduler then reports the failure as it does for units)."""
    try:
        facts = ray.get([a.placement.remote() for a in teachers + workers], timeout=120)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
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
