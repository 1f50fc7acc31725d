"""The queue in front of an engine that several students share (the teacher actor).

Calls run one at a time on the engine's own thread, each caller's in the order it sent them:
Ray does not promise an async actor's order, so every call carries its caller's sequence
number. Across callers, calls other than steps (prefills, clones, closes) go first, oldest
first; then the steps at the head of every caller's queue run as one forward
(`HFEngine.step_many`). So a teacher shared by several students batches their steps instead
of serving them one call after another.

Students do not send their steps at the same instant, so a round of steps waits up to
`batch_wait_s` for the other callers that are stepping (whose last call was a step) to send
theirs, as Ray Serve's `batch_wait_timeout_s` does. A caller whose step does not come within
the window stops counting as stepping until it sends one again, so a student that has left
its teacher phase costs the others one window, not one per step.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.engine.interface import SessionLost


@dataclass
class _Call:
    future: asyncio.Future
    stamp: int = 0
    run: Callable[[Any], Any] | None = None  # engine -> result: any call but a step
    step: tuple | None = None  # (session, tokens, rows) of a step
    finish: Callable[[Any], Any] | None = None  # a step's NextToken -> what the caller receives


class EngineQueue:
    def __init__(self, engine, batch_wait_s: float = 0.002):
        self.engine = engine
        self.batch_wait_s = batch_wait_s
        self.stepping: set[str] = set()  # callers whose last call was a step
        self.arrival = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.ready: dict[str, deque[_Call]] = defaultdict(deque)  # per caller, in its order
        self.arrived = 0  # stamps calls as they become ready: oldest first among callers
        self.next_seq: dict[str, int] = defaultdict(int)
        self.held: dict[str, dict[int, _Call]] = defaultdict(dict)
        self.draining = False
        self.step_calls = 0
        self.step_forwards = 0  # model forwards run for those calls: fewer when steps were batched

    def call(self, caller: str, seq: int, run: Callable[[Any], Any]) -> asyncio.Future:
        """Run `run(engine)` in the caller's order; its result."""
        return self._submit(caller, seq, _Call(asyncio.get_running_loop().create_future(), run=run))

    def step(self, caller: str, seq: int, session: str, tokens, rows, finish: Callable[[Any], Any]) -> asyncio.Future:
        """A step of `session`, batched with the steps of other sessions waiting beside it."""
        self.step_calls += 1
        call = _Call(asyncio.get_running_loop().create_future(), step=(session, tokens, rows), finish=finish)
        return self._submit(caller, seq, call)

    def _submit(self, caller: str, seq: int, call: _Call) -> asyncio.Future:
        held = self.held[caller]
        held[seq] = call
        self.arrival.set()
        while self.next_seq[caller] in held:
            ready = held.pop(self.next_seq[caller])
            (self.stepping.add if ready.step is not None else self.stepping.discard)(caller)
            ready.stamp, self.arrived = self.arrived, self.arrived + 1
            self.ready[caller].append(ready)
            self.next_seq[caller] += 1
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return call.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while any(self.ready.values()):
                await asyncio.sleep(0)  # calls that have already arrived join this round
                await self._wait_for_stepping_callers()
                batch = self._take()
                outcomes = await loop.run_in_executor(self.thread, self._run, batch)
                for call, (ok, value) in zip(batch, outcomes):
                    if not call.future.done():
                        (call.future.set_result if ok else call.future.set_exception)(value)
        finally:
            self.draining = False

    async def _wait_for_stepping_callers(self) -> None:
        """While only steps wait and some stepping caller has none queued, wait (up to the
        window) for it; callers still missing then stop counting as stepping."""
        deadline = time.monotonic() + self.batch_wait_s
        while self._missing_steppers() and (left := deadline - time.monotonic()) > 0:
            self.arrival.clear()
            try:
                await asyncio.wait_for(self.arrival.wait(), left)
            except asyncio.TimeoutError:
                break
        self.stepping -= self._missing_steppers()

    def _missing_steppers(self) -> set[str]:
        heads = [queue[0] for queue in self.ready.values() if queue]
        if not heads or any(call.step is None for call in heads):
            return set()
        return {caller for caller in self.stepping if not self.ready.get(caller)}

    def _take(self) -> list[_Call]:
        """The oldest call at a caller's head that is not a step, alone; else the step at the
        head of every caller's queue."""
        for caller in [c for c, queue in self.ready.items() if not queue]:
            del self.ready[caller]
        heads = {caller: queue[0] for caller, queue in self.ready.items()}
        others = [caller for caller, call in heads.items() if call.step is None]
        if others:
            return [self.ready[min(others, key=lambda c: heads[c].stamp)].popleft()]
        batch, sessions = [], set()
        for caller in sorted(heads, key=lambda c: heads[c].stamp):
            if heads[caller].step[0] not in sessions:  # one step per session per forward
                sessions.add(heads[caller].step[0])
                batch.append(self.ready[caller].popleft())
        return batch

    def _run(self, batch: list[_Call]) -> list[tuple[bool, Any]]:
        """On the engine's thread: each call's (ok, result or exception)."""
        if batch[0].step is None:
            return [_attempt(lambda: batch[0].run(self.engine))]
        live = [c for c in batch if c.step[0] in self.engine.sessions]
        self.step_forwards += bool(live)
        try:
            outs = dict(zip(map(id, live), self.engine.step_many([c.step for c in live]))) if live else {}
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            return [(False, exc)] * len(batch)
        results = []
        for c in batch:
            if id(c) in outs:
                results.append(_attempt(lambda c=c: c.finish(outs[id(c)])))
            else:
                results.append((False, SessionLost(f"decoding session {c.step[0]} is not open here (expired, evicted, or the engine restarted)")))
        return results


def _attempt(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001 - handed to the caller, as a sync actor would raise it
        return False, exc
