"""Running a job on Ray: actors, scheduling of work units, resume, manifest."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import ray
from tqdm import tqdm

from pipeline.actors import DecodeWorker, ModelActor
from pipeline.benchmarks import dataset_fingerprint
from pipeline.config import RunConfig
from pipeline.errors import UserError
from pipeline.manifest import check_compatible, config_hash, git_commit, now, package_versions
from pipeline.models import shared_vocab_size
from pipeline.results_io import existing_parts, filesystem, join, read_dataset, read_json, write_json, write_part


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def start_actors(config: RunConfig, vocab_size: int) -> tuple[list, list]:
    """Teachers and student workers, each group packed on one node where possible."""
    has_gpus = cluster_has_gpus()
    rc, dec = config.ray, config.decoding
    teachers, workers = [], []
    for t in range(rc.num_teachers):
        n_students = min(rc.students_per_teacher, rc.num_students - t * rc.students_per_teacher)
        group = ray.util.placement_group(
            [rc.teacher.bundle(has_gpus)] + [rc.student.bundle(has_gpus)] * n_students, strategy="PACK"
        )
        _wait_for(group, rc.placement_timeout_s)
        place = lambda i: ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)  # noqa: E731
        # workers find their teacher by name: a handle passed as a constructor argument would
        # live in the object store, and a restarted worker could lose it
        teacher_name = f"teacher-{uuid.uuid4().hex[:12]}"
        teacher = ModelActor.options(
            **rc.teacher.actor_options(has_gpus), scheduling_strategy=place(0), max_restarts=-1, max_task_retries=-1,
            name=teacher_name,
        ).remote(config.teacher, vocab_size, dec.reuse_preamble_cache)
        teachers.append(teacher)
        for s in range(n_students):
            workers.append(
                DecodeWorker.options(
                    **rc.student.actor_options(has_gpus), scheduling_strategy=place(1 + s), max_restarts=-1, max_task_retries=-1
                ).remote(config.student, teacher_name, vocab_size, config.prompt, dec.max_new_tokens, dec.reuse_preamble_cache)
            )
    return teachers, workers


def _wait_for(group, timeout_s: float) -> None:
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.util.remove_placement_group(group)
        raise UserError(
            f"Ray could not place a teacher and its students within {timeout_s:.0f}s: they need {group.bundle_specs}, "
            f"the cluster has {ray.cluster_resources()}; lower ray.*.num_gpus/num_cpus or ray.num_students, or add nodes"
        ) from None


def schedule(workers: list, units: Iterable, on_rows, max_attempts: int) -> None:
    """Keep every worker busy with one unit; hand results to `on_rows` as they finish.

    A unit whose worker died is retried (Ray restarts the actor) up to `max_attempts`.
    """
    pending = iter(units)
    in_flight: dict = {}

    def submit(worker, unit, attempt):
        in_flight[worker.run.remote(unit)] = (worker, unit, attempt)

    for worker in workers:
        unit = next(pending, None)
        if unit is not None:
            submit(worker, unit, 1)
    while in_flight:
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        worker, unit, attempt = in_flight.pop(ref)
        try:
            rows = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            if attempt >= max_attempts:
                raise RuntimeError(f"unit {unit.part_name} failed {attempt} times: {exc}") from exc
            submit(worker, unit, attempt + 1)
            continue
        on_rows(unit, rows)
        unit = next(pending, None)
        if unit is not None:
            submit(worker, unit, 1)


@dataclass
class Job:
    """One distributed job over work units: where its dataset goes and what it expects."""

    name: str  # recorded in the manifest
    dataset_dir: str  # subdirectory of --out holding the Parquet parts
    schema: pa.Schema
    units: list  # objects with .part_name, .examples and .run(decoder, template, worker_id, node_id)
    expected_rows: int
    manifest_name: str = "manifest.json"
    ignored_config: tuple[str, ...] = ()  # config sections that do not affect this job's output
    extra_actors: Callable[[bool, int], object] | None = None  # starts actors the units use (has_gpus, vocab)


def run_units(config: RunConfig, out: str, job: Job, examples: list) -> tuple[pa.Table, dict]:
    """Run every unit not already in `out` on Ray actors; returns the whole dataset and the manifest.

    Reruns resume: finished parts are kept, missing ones are computed. A different
    configuration into the same `out` is refused.
    """
    vocab_size = shared_vocab_size(config.student, config.teacher)
    fs, root = filesystem(out)
    data_dir, manifest_path = join(root, job.dataset_dir), join(root, job.manifest_name)
    key_hash = config_hash(config.results_key(job.ignored_config))
    previous = read_json(fs, manifest_path)
    check_compatible(previous, key_hash, out)
    manifest = {
        "job": job.name,
        "status": "running",
        "config": config.to_dict(),
        "config_hash": key_hash,
        "models": {"student": config.student.path, "teacher": config.teacher.path},
        "dataset": {"source": config.dataset.source, "split": config.dataset.split, "n_examples": len(examples),
                    "fingerprint": dataset_fingerprint(examples)},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "started_at": (previous or {}).get("started_at", now()),
    }
    fs.create_dir(root, recursive=True)
    write_json(fs, manifest_path, manifest)

    done = existing_parts(fs, data_dir)
    todo = [u for u in job.units if u.part_name not in done]
    print(f"{len(job.units) - len(todo)} of {len(job.units)} work units already done; {len(todo)} to run", flush=True)
    started = time.time()
    if todo:
        ray.init(ignore_reinit_error=True, log_to_driver=False)
        # the driver holds every handle until the end: Ray ends an actor when no handle is left
        teachers, workers = start_actors(config, vocab_size)
        extras = job.extra_actors(cluster_has_gpus(), vocab_size) if job.extra_actors is not None else None
        with tqdm(total=sum(len(u.examples) for u in todo), unit="ex", desc=job.name) as bar:
            def write(unit, rows):
                write_part(fs, data_dir, unit.part_name, rows, job.schema)
                bar.update(len(unit.examples))
            schedule(workers, todo, write, config.ray.max_attempts)
        del teachers, workers, extras

    table = read_dataset(fs, data_dir)
    if table.num_rows != job.expected_rows:
        raise UserError(f"{out}: {job.dataset_dir} holds {table.num_rows} rows, expected {job.expected_rows}; rerun to finish")
    manifest.update(finished_at=now(), counts={"rows": table.num_rows, "examples": len(examples)},
                    wall_s_this_session=time.time() - started)
    return table, manifest


def finish(out: str, job: Job, manifest: dict, summary_name: str, summary: dict) -> None:
    """Write the job's summary, then mark the manifest complete (last, so 'complete' means complete)."""
    fs, root = filesystem(out)
    write_json(fs, join(root, summary_name), summary)
    manifest.update(status="complete", summary=summary)
    write_json(fs, join(root, job.manifest_name), manifest)
