"""A strategy kept outside the package (`name: "hold_plugin:hold"`), for tests that must act
while a run is in progress: its rows are the student's, and from this process's
`after`-th batch on it waits while the file `path` exists, having said so in
`path.waiting.<pid>`. A test thus reaches "a unit is in flight" by a file, not by timing."""
import os
import time

import torch

from pipeline.decoding.strategies import Strategy, TeacherPlan, strategy

_batches = 0  # batches this process has decoded with the strategy


@strategy("hold")
class Hold(Strategy):
    path: str
    after: int = 1

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=1)  # asked per batch for its rows' α (always 0: the student's rows)

    def params(self) -> dict:
        return {}  # rows equal whatever file held them

    def row_alphas(self, p_first: torch.Tensor, features=None, p_teacher=None) -> torch.Tensor:
        global _batches
        _batches += 1
        if _batches > self.after and os.path.exists(self.path):
            marker = f"{self.path}.waiting.{os.getpid()}"
            open(marker, "w").close()
            while os.path.exists(self.path):
                time.sleep(0.02)
        return torch.zeros(p_first.shape[0], device=p_first.device)


_met = False  # whether this process has met the other workers already


@strategy("meet")
class Meet(Strategy):
    """A barrier: each worker's first batch waits (up to `limit_s`) until `workers` workers have
    reached it, each saying so in `path.<pid>`, so that their units step together from there
    (by files, not by timing). Its rows are the student's."""

    path: str
    workers: int = 2
    limit_s: float = 120.0

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan(steps=1)

    def params(self) -> dict:
        return {}

    def row_alphas(self, p_first: torch.Tensor, features=None, p_teacher=None) -> torch.Tensor:
        global _met
        if not _met:
            open(f"{self.path}.{os.getpid()}", "w").close()
            deadline = time.monotonic() + self.limit_s
            folder, name = os.path.split(self.path)
            while sum(f.startswith(name + ".") for f in os.listdir(folder)) < self.workers and time.monotonic() < deadline:
                time.sleep(0.02)
            _met = True
        return torch.zeros(p_first.shape[0], device=p_first.device)
