"""Starting actors where they fit: teachers with their students packed on one node, and
single model actors (a teaching assistant), each with a bounded wait for resources."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from pipeline.config import RoleResources, RunConfig
from pipeline.config.sections import ModelSpec
from pipeline.data.prompts import load_template
from pipeline.runtime.prompting import run_chat
from pipeline.engine.stop import StopRule, stop_rule
from pipeline.errors import UserError
from pipeline.models.facts import model_facts
from pipeline.runtime.actors import DecodeWorker, ModelActor
from pipeline.runtime.resources import actor_options, bundle, cluster_has_gpus


def restart_policy(max_attempts: int) -> dict:
    """Ray restarts a dead actor at most `max_attempts` times and never re-runs a task by
    itself: the scheduler decides what is retried, so a unit that kills its worker every
    time ends the run after `ray.max_attempts` tries."""
    return {"max_restarts": max_attempts, "max_task_retries": 0}


@dataclass
class Fleet:
    """The actors of a run and the placement groups that hold their resources. The driver
    holds every handle until `release`: Ray ends an actor when no handle is left."""
    teachers: list = field(default_factory=list)
    workers: list = field(default_factory=list)
    groups: list = field(default_factory=list)

    def release(self) -> None:
        """Ends the actors and frees their resources now, not when Ray collects the handles:
        a second job in this process (a notebook, a test) finds the cluster's resources free."""
        for actor in self.teachers + self.workers:
            try:
                ray.kill(actor)
            except ValueError:  # not an actor handle any more: nothing to end
                pass
        for group in self.groups:
            ray.util.remove_placement_group(group)
        self.teachers, self.workers, self.groups = [], [], []


def start_decoders(config: RunConfig, vocab_size: int, memory: dict[str, int] | None = None) -> Fleet:
    """Teachers and student workers, each teacher packed with its students on one node where
    possible; `memory`: host bytes each role declares (none when not given)."""
    has_gpus = cluster_has_gpus()
    memory = memory or {}
    student_memory, teacher_memory = memory.get("student", 0), memory.get("teacher", 0)
    rc, dec = config.ray, config.decoding
    stop = run_stop_rule(config)
    fleet = Fleet()
    for t in range(rc.num_teachers):
        n_students = min(rc.students_per_teacher, rc.num_students - t * rc.students_per_teacher)
        group = ray.util.placement_group(
            [bundle(rc.teacher, has_gpus, teacher_memory)] + [bundle(rc.student, has_gpus, student_memory)] * n_students,
            strategy="PACK"
        )
        try:
            _wait_for_group(group, rc.placement_timeout_s)
        except UserError:
            fleet.release()
            raise
        fleet.groups.append(group)

        def place(i: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)

        # workers find their teacher by name: a handle passed as a constructor argument would
        # live in the object store, and a restarted worker could lose it
        teacher_name = f"teacher-{uuid.uuid4().hex[:12]}"
        fleet.teachers.append(ModelActor.options(
            **actor_options(rc.teacher, has_gpus, teacher_memory), **restart_policy(rc.max_attempts), scheduling_strategy=place(0),
            name=teacher_name,
        ).remote(config.teacher, vocab_size, dec.reuse_preamble_cache, rc.teacher_batch_wait_s if rc.teacher_batch_steps else None))
        for s in range(n_students):
            fleet.workers.append(DecodeWorker.options(
                **actor_options(rc.student, has_gpus, student_memory), **restart_policy(rc.max_attempts),
                scheduling_strategy=place(1 + s),
            ).remote(config.student, teacher_name, vocab_size, config.default_prompt, stop, dec.reuse_preamble_cache,
                     dec.teacher_top_k or None, run_chat(config)))
    return fleet


def run_stop_rule(config: RunConfig) -> StopRule:
    """Rows end at either model's end ids or the config's extra stop ids, at the template's
    stop strings, or at the token budget (a worker swaps in the stop strings of a unit's own
    template, in a run over several benchmarks)."""
    student, teacher = model_facts(config.student), model_facts(config.teacher)
    dec = config.decoding
    chat = run_chat(config)
    turn_ends = chat.end_ids if chat is not None else ()  # a chat model's answer ends its turn
    return stop_rule(student.eos_ids + teacher.eos_ids + turn_ends, dec.stop_token_ids,
                     load_template(config.default_prompt).stop_strings, dec.max_new_tokens)


def start_model_actor(spec: ModelSpec, resources: RoleResources, vocab_size: int, config: RunConfig, name: str, role: str):
    """One named ModelActor (e.g. a teaching assistant), waiting at most the placement timeout for it."""
    has_gpus = cluster_has_gpus()
    options = actor_options(resources, has_gpus)
    actor = ModelActor.options(**options, **restart_policy(config.ray.max_attempts), name=name).remote(
        spec, vocab_size, config.decoding.reuse_preamble_cache
    )
    timeout = config.ray.placement_timeout_s
    try:
        ray.get(actor.placement.remote(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise UserError(
            f"Ray could not start the {role} actor within {timeout:.0f}s: it needs {options}, "
            f"the cluster has {ray.cluster_resources()}; lower its resources in the config"
        ) from None
    return actor


def _wait_for_group(group, timeout_s: float) -> None:
    print(f"waiting up to {timeout_s:.0f}s for Ray to place {group.bundle_specs} (ray.placement_timeout_s)", flush=True)
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.util.remove_placement_group(group)
        raise UserError(
            f"Ray could not place a teacher and its students within {timeout_s:.0f}s: they need {group.bundle_specs}, "
            f"the cluster has {ray.cluster_resources()}; lower ray.*.num_gpus/num_cpus or ray.num_students, "
            "lower decoding.batch_size or set ray.*.memory_gb (memory is in bytes), or add nodes"
        ) from None
