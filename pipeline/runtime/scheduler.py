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
    if isinstance(cause, ray.exceptions.OutOfMemoryError):
        return ("Ray's memory monitor killed a worker: its node ran out of memory (lower decoding.batch_size or "
                "ray.num_students, or raise ray.student.memory_gb / ray.teacher.memory_gb so fewer actors share a node)")
    if isinstance(cause, INFRASTRUCTURE):
        kind = "worker death" if isinstance(cause, ray.exceptions.RayActorError) else type(cause).__name__
        return f"{kind} ({_first_line(cause)})"
    raise JobFailed(f"unit {unit_name} failed: {type(cause).__name__}: {_first_line(cause)}") from None


PROGRESS_EVERY_S = 1.0
RESTART_WAIT_S = 600.0  # how long a dead worker (or its teacher) may take to come back
PROBE_AGAIN_S = 0.5


def schedule(
    workers: list, units: Iterable, on_rows: Callable[[object, list[dict]], None], max_attempts: int,
    per_worker: int = 2, log: Callable[[str], None] = print, on_wait: Callable[[], None] | None = None,
    ready: Callable[[object], object] | None = None,
) -> int:
    """Run every unit on the workers (`worker.run.remote(unit)`), `per_worker` in flight on
    each so none idles between units; `on_rows(unit, rows)` as each finishes, `on_wait()`
    about every second in between (live progress). Returns the number of retries.

    A unit whose worker died is sent again only once `ready(worker)` (an object ref; default:
    the actor is up) says the worker, and what it depends on, is back: a unit sent to an
    actor that is still restarting would fail at once and spend its attempts for nothing.
    The driver never blocks on one actor: every wait here has a timeout."""
    ready = ready or (lambda worker: worker.__ray_ready__.remote())
    pending = iter(units)
    in_flight: dict = {}  # unit's ref -> (worker, unit, attempt)
    probes: dict = {}  # readiness ref -> (worker, unit, attempt, deadline)
    later: list = []  # (probe again at, worker, unit, attempt, deadline)
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
    while in_flight or probes or later:
        now = time.monotonic()
        if any(deadline < now for *_, deadline in [*probes.values(), *later]):
            raise JobFailed(f"a worker (or its teacher) did not come back within {RESTART_WAIT_S:.0f}s of dying")
        for entry in [e for e in later if e[0] <= now]:
            later.remove(entry)
            probes[ready(entry[1])] = entry[1:]
        refs = [*in_flight, *probes]
        found, _ = ray.wait(refs, num_returns=1, timeout=PROBE_AGAIN_S if later else PROGRESS_EVERY_S) if refs else ([], [])
        if not found:
            if not refs:
                time.sleep(PROBE_AGAIN_S)
            if on_wait is not None:
                on_wait()
            continue
        ref = found[0]
        if ref in probes:
            worker, unit, attempt, deadline = probes.pop(ref)
            if _is_ready(ref):
                submit(worker, unit, attempt)
            else:
                later.append((time.monotonic() + PROBE_AGAIN_S, worker, unit, attempt, deadline))
            continue
        worker, unit, attempt = in_flight.pop(ref)
        try:
            rows = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - sorted into retry or failure right here
            reason = retry_reason(exc, unit.part_name)
            if attempt >= max_attempts:
                raise JobFailed(f"unit {unit.part_name} failed {attempt} times (ray.max_attempts={max_attempts}); last: {reason}") from None
            log(f"retrying unit {unit.part_name} (attempt {attempt + 1} of {max_attempts}) after {reason}")
            retries += 1
            probes[ready(worker)] = (worker, unit, attempt + 1, time.monotonic() + RESTART_WAIT_S)
            continue
        on_rows(unit, rows)
        submit_next(worker)
    return retries


def _is_ready(probe) -> bool:
    """What a finished readiness probe says; an actor that cannot come back ends the run."""
    try:
        return ray.get(probe, timeout=0) is not False
    except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
        return False
    except ray.exceptions.RayActorError as exc:
        raise JobFailed(f"a worker died and cannot be restarted: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
