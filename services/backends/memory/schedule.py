"""``ScheduleStore`` in memory: the schedulers' lease and fired due times of one process tree.

Held by the tree's ``MemoryState`` (so every connection of the tree sees the same store) and
thread-safe; the lease runs on the monotonic clock of the process that holds it. Due times are
kept in whole milliseconds, as the Redis store keeps them, so both answer alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


class MemorySchedule:
    """The schedulers' lease and the newest due time fired per periodic entry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._leaders: dict[str, tuple[str, float]] = {}
        """Per group: (scheduler id, lease expiry on ``clock``)."""
        self._fired_ms: dict[str, int] = {}

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        with self._lock:
            now = self._clock()
            held = self._leaders.get(group)
            if held is not None and held[0] != scheduler_id and held[1] > now:
                return False
            self._leaders[group] = (scheduler_id, now + ttl_s)
            return True

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        with self._lock:
            held = self._leaders.get(group)
            if held is not None and held[0] == scheduler_id:
                del self._leaders[group]

    def leader(self, *, group: str = "") -> str | None:
        with self._lock:
            held = self._leaders.get(group)
            return held[0] if held is not None and held[1] > self._clock() else None

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        with self._lock:
            return {name: self._fired_ms[name] / 1000 for name in names if name in self._fired_ms}

    def mark_fired(self, name: str, due: float) -> None:
        due_ms = round(due * 1000)
        with self._lock:
            self._fired_ms[name] = max(self._fired_ms.get(name, due_ms), due_ms)
