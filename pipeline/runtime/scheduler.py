"""Handing work units to worker actors, with bounded retries.

Two kinds of failure are told apart:
- the infrastructure failed (the worker or its teacher died, a node was lost, memory ran
  out, a teacher session was lost): the unit is retried, at most `max_attempts` tries in
  all, and each retry is reported;
- the unit's own code raised: it would raise again, so the run ends at once with that
  message (a `UserError` as itself, anything else as `JobFailed`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import ray
import torch

from pipeline.engine.interface import SessionLost
from pipeline.errors import JobFailed, UserError

INFRASTRUCTURE = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OutOfMemoryError,
    SessionLost,
    torch.OutOfMemoryError,
)


def root_cause(exc: BaseException) -> BaseException:
    """The exception a unit really raised, through Ray's task-error wrappers (a student's unit
    that failed on a call to its teacher wraps twice)."""
    while isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None and exc.cause is not exc:
        exc = exc.cause
    return exc


def retry_reason(exc: BaseException, unit_name: str) -> str:
    """Why an infrastructure failure happened, in a few words; raises for a unit's own error."""
    cause = root_cause(exc)
    if isinstance(cause, UserError):
        raise UserError(str(cause)) from None
    if isinstance(cause, INFRASTRUCTURE):
        kind = "worker death" if isinstance(cause, ray.exceptions.RayActorError) else type(cause).__name__
        return f"{kind} ({_first_line(cause)})"
    raise JobFailed(f"unit {unit_name} failed: {type(cause).__name__}: {_first_line(cause)}") from None


PROGRESS_EVERY_S = 1.0


def schedule(
    workers: list, units: Iterable, on_rows: Callable[[object, list[dict]], None], max_attempts: int,
    per_worker: int = 2, log: Callable[[str], None] = print, on_wait: Callable[[], None] | None = None,
) -> int:
    """Run every unit on the workers (`worker.run.remote(unit)`), `per_worker` in flight on
    each so none idles between units; `on_rows(unit, rows)` as each finishes, `on_wait()`
    about every second in between (live progress). Returns the number of retries."""
    pending = iter(units)
    in_flight: dict = {}
    retries = 0

    def submit(worker, unit, attempt: int) -> None:
        in_flight[worker.run.remote(unit)] = (worker, unit, attempt)

    def submit_next(worker) -> None:
        unit = next(pending, None)
        if unit is not None:
            submit(worker, unit, 1)

    for _ in range(per_worker):
        for worker in workers:
            submit_next(worker)
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=PROGRESS_EVERY_S if on_wait else None)
        if not ready:
            on_wait()
            continue
        ref = ready[0]
        worker, unit, attempt = in_flight.pop(ref)
        try:
            rows = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - sorted into retry or failure right here
            reason = retry_reason(exc, unit.part_name)
            if attempt >= max_attempts:
                raise JobFailed(f"unit {unit.part_name} failed {attempt} times (ray.max_attempts={max_attempts}); last: {reason}") from None
            log(f"retrying unit {unit.part_name} (attempt {attempt + 1} of {max_attempts}) after {reason}")
            retries += 1
            wait_until_alive(worker)
            submit(worker, unit, attempt + 1)
            continue
        on_rows(unit, rows)
        submit_next(worker)
    return retries


def wait_until_alive(worker, timeout_s: float = 600.0) -> None:
    """Block until Ray has restarted a dead worker: a task sent to a restarting actor fails
    at once and would burn the unit's attempts without running it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(worker.__ray_ready__.remote())
            return
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise JobFailed(f"a worker did not come back within {timeout_s:.0f}s of dying") from None
            time.sleep(0.2)
        except ray.exceptions.ActorDiedError as exc:
            raise JobFailed(f"a worker died and cannot be restarted: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
