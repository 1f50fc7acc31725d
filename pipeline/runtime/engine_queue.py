"""The queue in front of an engine that several students share (the teacher actor).

Calls run one at a time on the engine's own thread, each caller's in the order it sent them:
Ray does not promise an async actor's order, so every call carries its caller's sequence
number. Across callers, calls other than feeds (prefills, clones, closes) go first, oldest
first; then the feeds (steps and catch-ups, each of one or several sessions) at the head of
every caller's queue run as one forward (`HFEngine.extend_many`). So a teacher shared by
several students batches their steps instead of serving them one call after another.

Students do not send their steps at the same instant, so a round of feeds waits up to
`batch_wait_s` for the other callers that are stepping (whose last call was a feed) to send
theirs, as Ray Serve's `batch_wait_timeout_s` does. A caller whose feed does not come within
the window stops counting as stepping until it sends one again, so a student done with
its teacher costs the others one window, not one per step; students stepping at
different rates may cost each other up to a window per step (`ray.teacher_batch_wait_s`).
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import Feed, SessionLost
from pipeline.engine.sessions import session_lost


@dataclass
class _Call:
    future: asyncio.Future
    stamp: int = 0
    run: Callable[[Any], Any] | None = None  # engine -> result: any call but a feed
    feeds: list[Feed] | None = None  # (session, tokens per row, rows) of each session a feed names
    finish: Callable[[Any], Any] | None = None  # a feed's NextTokens -> what the caller receives


class EngineQueue:
    """The calls waiting for one engine (see the module's docstring). A caller whose earlier
    call never arrives (the actor restarted between two of its calls) has its later calls
    failed with SessionLost after `gap_timeout_s`, instead of holding them forever."""

    def __init__(self, engine: HFEngine, batch_wait_s: float | None = 0.002, gap_timeout_s: float = 30.0):
        """`batch_wait_s=None`: every feed runs alone, oldest first (no batching)."""
        self.engine = engine
        self.batch_wait_s, self.gap_timeout_s = batch_wait_s, gap_timeout_s
        self.stepping: set[str] = set()  # callers whose last call was a feed
        self.arrival = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.ready: dict[str, deque[_Call]] = defaultdict(deque)  # per caller, in its order
        self.arrived = 0  # stamps calls as they become ready: oldest first among callers
        self.next_seq: dict[str, int] = defaultdict(int)
        self.held: dict[str, dict[int, _Call]] = defaultdict(dict)
        self.draining = False
        self.drainer: asyncio.Future | None = None  # kept: a task nobody holds may be collected mid-run
        self.feed_calls = 0
        self.feed_forwards = 0  # model forwards run for those calls: fewer when feeds were batched

    def call(self, caller: str, seq: int, run: Callable[[Any], Any]) -> asyncio.Future:
        """Run `run(engine)` in the caller's order; its result."""
        return self._submit(caller, seq, _Call(asyncio.get_running_loop().create_future(), run=run))

    def feed(self, caller: str, seq: int, feeds: list[Feed], finish: Callable[[Any], Any]) -> asyncio.Future:
        """A feed of one or several sessions, batched with the feeds of other callers waiting beside it."""
        self.feed_calls += 1
        call = _Call(asyncio.get_running_loop().create_future(), feeds=list(feeds), finish=finish)
        return self._submit(caller, seq, call)

    def _submit(self, caller: str, seq: int, call: _Call) -> asyncio.Future:
        if seq < self.next_seq[caller]:  # came after the calls behind it were failed (`_fail_gap`)
            call.future.set_exception(SessionLost(f"call {seq} of this caller came after its later calls had failed"))
            return call.future
        held = self.held[caller]
        held[seq] = call
        self.arrival.set()
        while self.next_seq[caller] in held:
            ready = held.pop(self.next_seq[caller])
            (self.stepping.add if ready.feeds is not None else self.stepping.discard)(caller)
            ready.stamp, self.arrived = self.arrived, self.arrived + 1
            self.ready[caller].append(ready)
            self.next_seq[caller] += 1
        if held:
            asyncio.get_running_loop().call_later(self.gap_timeout_s, self._fail_gap, caller, self.next_seq[caller])
        if not self.draining:
            self.draining = True
            self.drainer = asyncio.ensure_future(self._drain())
        return call.future

    def _fail_gap(self, caller: str, waiting_for: int) -> None:
        """The caller's call `waiting_for` has not come: fail the calls held behind it; later
        calls run again (they will find their sessions gone, and the caller starts over)."""
        held = self.held[caller]
        if self.next_seq[caller] != waiting_for or not held:
            return
        for seq in sorted(held):
            held.pop(seq).future.set_exception(SessionLost(
                f"call {seq} of this caller waited {self.gap_timeout_s:.0f}s for its call {waiting_for}, which never "
                "arrived (the actor restarted between them)"))
            self.next_seq[caller] = seq + 1

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while any(self.ready.values()):
                await asyncio.sleep(0)  # calls that have already arrived join this round
                if self.batch_wait_s is not None:
                    await self._wait_for_stepping_callers()
                batch = self._take()
                try:
                    outcomes = await loop.run_in_executor(self.thread, self._run, batch)
                except Exception as exc:  # noqa: BLE001 - no caller of the batch may wait forever
                    outcomes = [(False, exc)] * len(batch)
                for call, (ok, value) in zip(batch, outcomes):
                    if not call.future.done():
                        (call.future.set_result if ok else call.future.set_exception)(value)
        finally:
            self.draining = False

    async def _wait_for_stepping_callers(self) -> None:
        """While only feeds wait and some stepping caller has none queued, wait (up to the
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
        if not heads or any(call.feeds is None for call in heads):
            return set()
        return {caller for caller in self.stepping if not self.ready.get(caller)}

    def _take(self) -> list[_Call]:
        """The oldest call at a caller's head that is not a feed, alone; else the feed at the
        head of every caller's queue (no session twice in one forward)."""
        for caller in [c for c, queue in self.ready.items() if not queue]:
            del self.ready[caller]
        heads = {caller: queue[0] for caller, queue in self.ready.items()}
        others = [caller for caller, call in heads.items() if call.feeds is None]
        if others:
            return [self.ready[min(others, key=lambda c: heads[c].stamp)].popleft()]
        if self.batch_wait_s is None:
            return [self.ready[min(heads, key=lambda c: heads[c].stamp)].popleft()]
        batch, sessions = [], set()
        for caller in sorted(heads, key=lambda c: heads[c].stamp):
            named = {session for session, _, _ in heads[caller].feeds}
            if not named & sessions:
                sessions |= named
                batch.append(self.ready[caller].popleft())
        return batch

    def _run(self, batch: list[_Call]) -> list[tuple[bool, Any]]:
        """On the engine's thread: each call's (ok, result or exception)."""
        if batch[0].feeds is None:
            return [_attempt(lambda: batch[0].run(self.engine))]
        sessions = getattr(self.engine, "sessions", None)  # a backend without session lookup fails the feed itself
        live = [c for c in batch if sessions is None or all(f[0] in sessions for f in c.feeds)]
        forwards = getattr(self.engine, "forwards", 0)
        try:
            outs = self.engine.extend_many([f for c in live for f in c.feeds]) if live else []
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            return [(False, exc)] * len(batch)
        finally:  # one forward, or one per session where they could not share one
            self.feed_forwards += getattr(self.engine, "forwards", forwards + len(live)) - forwards
        mine, start = {}, 0
        for c in live:
            mine[id(c)] = outs[start: start + len(c.feeds)]
            start += len(c.feeds)
        results = []
        for c in batch:
            if id(c) in mine:
                results.append(_attempt(lambda c=c: c.finish(mine[id(c)])))
            else:
                results.append((False, session_lost(next(f[0] for f in c.feeds if f[0] not in sessions))))
        return results


def _attempt(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001 - handed to the caller, as a sync actor would raise it
        return False, exc
