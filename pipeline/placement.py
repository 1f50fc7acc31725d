"""How decoding actors ask Ray for resources: configuration validated at load."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import UserError
from pipeline.settings import settings_from


@dataclass(frozen=True)
class RoleResources:
    """Resources one actor of a role (student or teacher) asks for."""

    num_gpus: float = 1.0
    num_cpus: float = 1.0
    accelerator_type: str | None = None
    resources: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise UserError(f"ray: num_gpus and num_cpus must be ≥ 0, got {self.num_gpus}, {self.num_cpus}")

    def actor_options(self, cluster_has_gpus: bool) -> dict:
        """Ray actor options; GPU requests are dropped on a cluster without GPUs (CPU fallback)."""
        options: dict = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus if cluster_has_gpus else 0}
        if self.accelerator_type and cluster_has_gpus:
            options["accelerator_type"] = self.accelerator_type
        if self.resources:
            options["resources"] = dict(self.resources)
        return options

    def bundle(self, cluster_has_gpus: bool) -> dict:
        bundle = {"CPU": self.num_cpus, **self.resources}
        if cluster_has_gpus and self.num_gpus:
            bundle["GPU"] = self.num_gpus
        return {k: v for k, v in bundle.items() if v}


@dataclass(frozen=True)
class RayConfig:
    num_students: int = 1
    students_per_teacher: int = 1
    student: RoleResources = RoleResources()
    teacher: RoleResources = RoleResources()
    max_attempts: int = 3  # tries per work unit before the run fails
    placement_timeout_s: float = 600.0  # autoscaling clusters may need minutes to add GPU nodes

    def __post_init__(self) -> None:
        for key in ("num_students", "students_per_teacher", "max_attempts"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"ray.{key} must be an integer ≥ 1, got {value!r}")

    @property
    def num_teachers(self) -> int:
        return -(-self.num_students // self.students_per_teacher)

    @classmethod
    def from_dict(cls, raw: dict) -> "RayConfig":
        raw = dict(raw or {})
        for role in ("student", "teacher"):
            raw[role] = settings_from(RoleResources, raw.get(role), f"config: 'ray.{role}'")
        return settings_from(cls, raw, "config: 'ray'")
