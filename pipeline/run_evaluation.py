"""Distributed evaluation: actors, scheduling of work units, resume, manifest, summary."""
from __future__ import annotations

import time
from collections.abc import Iterable

import ray
from tqdm import tqdm

from pipeline.actors import DecodeWorker, TeacherActor
from pipeline.benchmarks import dataset_fingerprint, load_examples
from pipeline.config import RunConfig
from pipeline.errors import UserError
from pipeline.evaluation import WorkUnit, make_units
from pipeline.manifest import check_compatible, config_hash, git_commit, now, package_versions
from pipeline.models import shared_vocab_size
from pipeline.prompts import load_template
from pipeline.results_io import RESULT_SCHEMA, existing_parts, filesystem, join, read_dataset, read_json, write_json, write_part
from pipeline.summary import format_table, summarize


def start_actors(config: RunConfig, vocab_size: int) -> tuple[list, list]:
    """Teachers and student workers, each group packed on one node where possible."""
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    rc, dec = config.ray, config.decoding
    teachers, workers = [], []
    for t in range(rc.num_teachers):
        n_students = min(rc.students_per_teacher, rc.num_students - t * rc.students_per_teacher)
        group = ray.util.placement_group(
            [rc.teacher.bundle(has_gpus)] + [rc.student.bundle(has_gpus)] * n_students, strategy="PACK"
        )
        _wait_for(group, rc.placement_timeout_s)
        place = lambda i: ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)  # noqa: E731
        teacher = TeacherActor.options(
            **rc.teacher.actor_options(has_gpus), scheduling_strategy=place(0), max_restarts=-1, max_task_retries=-1
        ).remote(config.teacher, vocab_size, dec.reuse_preamble_cache)
        teachers.append(teacher)
        for s in range(n_students):
            workers.append(
                DecodeWorker.options(
                    **rc.student.actor_options(has_gpus), scheduling_strategy=place(1 + s), max_restarts=-1, max_task_retries=-1
                ).remote(config.student, teacher, vocab_size, config.prompt, dec.max_new_tokens, dec.reuse_preamble_cache)
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


def schedule(workers: list, units: Iterable[WorkUnit], on_rows, max_attempts: int) -> None:
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


def run_evaluation(config: RunConfig, out: str) -> list[dict]:
    """Evaluate every configured strategy on the dataset into `out`; returns the summary."""
    load_template(config.prompt)  # fail on a bad template before anything starts
    examples = load_examples(config.dataset)
    vocab_size = shared_vocab_size(config.student, config.teacher)
    fs, root = filesystem(out)
    results_dir, manifest_path = join(root, "results"), join(root, "manifest.json")
    key_hash = config_hash(config.results_key())
    previous = read_json(fs, manifest_path)
    check_compatible(previous, key_hash, out)

    manifest = {
        "job": "evaluate",
        "status": "running",
        "config": config.to_dict(),
        "config_hash": key_hash,
        "models": {"student": config.student.path, "teacher": config.teacher.path},
        "dataset": {"source": config.dataset.source, "n_examples": len(examples), "fingerprint": dataset_fingerprint(examples)},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "started_at": (previous or {}).get("started_at", now()),
    }
    fs.create_dir(root, recursive=True)
    write_json(fs, manifest_path, manifest)

    done = existing_parts(fs, results_dir)
    units = list(make_units(config.strategies, examples, config.decoding.batch_size, config.dataset.name, config.dataset.split))
    todo = [u for u in units if u.part_name not in done]
    print(f"{len(units) - len(todo)} of {len(units)} work units already done; {len(todo)} to run", flush=True)
    started = time.time()
    if todo:
        ray.init(ignore_reinit_error=True, log_to_driver=False)
        _, workers = start_actors(config, vocab_size)
        with tqdm(total=sum(len(u.examples) for u in todo), unit="ex", desc="decoding") as bar:
            def write(unit, rows):
                write_part(fs, results_dir, unit.part_name, rows, RESULT_SCHEMA)
                bar.update(len(rows))
            schedule(workers, todo, write, config.ray.max_attempts)

    table = read_dataset(fs, results_dir)
    expected = len(examples) * len(config.strategies)
    if table.num_rows != expected:
        raise UserError(f"{out}: results hold {table.num_rows} rows, expected {expected}; rerun to finish")
    summary = summarize(table, config.strategies)
    manifest.update(
        status="complete",
        finished_at=now(),
        counts={"rows": table.num_rows, "examples": len(examples), "strategies": len(config.strategies)},
        wall_s_this_session=time.time() - started,
        summary=summary,
    )
    write_json(fs, join(root, "summary.json"), {"strategies": summary})
    write_json(fs, manifest_path, manifest)
    return summary
