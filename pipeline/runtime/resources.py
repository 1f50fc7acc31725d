"""What a role's `RoleResources` (config) asks of Ray: actor options and placement bundles."""
from __future__ import annotations

import ray

from pipeline.config.sections import RoleResources


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def actor_options(role: RoleResources, cluster_has_gpus: bool, memory: int = 0) -> dict:
    """Ray actor options; GPU requests are dropped on a cluster without GPUs (CPU fallback);
    `memory`: host bytes the actor declares (pipeline/runtime/memory.py)."""
    options: dict = {"num_cpus": role.num_cpus, "num_gpus": role.num_gpus if cluster_has_gpus else 0}
    if memory:
        options["memory"] = memory
    if role.accelerator_type and cluster_has_gpus:
        options["accelerator_type"] = role.accelerator_type
    if role.resources:
        options["resources"] = dict(role.resources)
    return options


def bundle(role: RoleResources, cluster_has_gpus: bool, memory: int = 0) -> dict:
    """The placement-group bundle one actor of this role occupies."""
    resources = {"CPU": role.num_cpus, "memory": memory, **role.resources}
    if cluster_has_gpus and role.num_gpus:
        resources["GPU"] = role.num_gpus
    return {k: v for k, v in resources.items() if v}
