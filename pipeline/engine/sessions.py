"""Per-caller decoding state inside an engine, bounded in number and age.

A teacher actor keeps one session per student batch in flight. A student that dies
mid-unit never closes its session, so sessions also expire when unused for `ttl_s`, and
the least recently used one is evicted when more than `max_sessions` are open. `on_drop`
hears of every state that leaves, closed or not (an engine frees its cache slots there).
"""
from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from pipeline.engine.interface import SessionLost

S = TypeVar("S")


def session_lost(session: str) -> SessionLost:
    return SessionLost(f"decoding session {session} is not open here (expired, evicted, or the engine restarted)")


class SessionStore(Generic[S]):
    def __init__(self, max_sessions: int = 64, ttl_s: float = 900.0, clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self._items: OrderedDict[str, tuple[float, S]] = OrderedDict()
        self.on_drop: Callable[[S], None] = lambda state: None

    def put(self, session: str, state: S) -> None:
        self.expire()
        self.pop(session)
        self._items[session] = (self.clock(), state)
        self._items.move_to_end(session)
        while len(self._items) > self.max_sessions:
            evicted, (_, dropped) = self._items.popitem(last=False)
            self.on_drop(dropped)
            warnings.warn(f"engine holds more than {self.max_sessions} sessions: evicted the oldest ({evicted})", RuntimeWarning, stacklevel=2)

    def get(self, session: str) -> S:
        if session not in self._items:
            raise session_lost(session)
        _, state = self._items[session]
        self._items[session] = (self.clock(), state)
        self._items.move_to_end(session)
        return state

    def pop(self, session: str) -> None:
        item = self._items.pop(session, None)
        if item is not None:
            self.on_drop(item[1])

    def expire(self) -> None:
        cutoff = self.clock() - self.ttl_s
        for session in [s for s, (used, _) in self._items.items() if used < cutoff]:
            self.pop(session)

    def __contains__(self, session: str) -> bool:
        return session in self._items

    def __len__(self) -> int:
        return len(self._items)
