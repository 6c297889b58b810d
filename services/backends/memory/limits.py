"""The memory backend's limits: concurrency permits, the jobs waiting for them, start rates.

The same semantics as the Redis backend (``services.protocol.limiting``), in one process:
permits are held by delivery receipt and released when the delivery is settled or its
consumer reclaimed; a refused job waits as ``(queue, job id)`` until a release wakes it; a
rate is a GCRA theoretical arrival time per key, and a start it refuses reserves the next free
slot, at which the parked job is admitted without asking again.

Not thread-safe: ``MemoryState`` calls it under its lock, with its clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from services.limits import ConcurrencyLimit, Limit, RateLimit
from services.protocol.limiting import CONCURRENCY_RETRY_S

Waiter = tuple[str, str]
"""A parked job: ``(queue, job id)``."""

RESERVATION_KEPT_S = 3600.0
"""A reserved rate slot unused for this long (its job was cancelled, say) is forgotten."""


class Limits:
    """Every limit of one memory backend, by key."""

    def __init__(self) -> None:
        self._holders: dict[str, set[str]] = {}
        """Per key, the receipts holding one of its permits."""
        self._held: dict[str, list[str]] = {}
        """Per receipt, the keys it holds a permit of."""
        self._waiters: dict[str, deque[Waiter]] = {}
        self._tat: dict[str, float] = {}
        self._reserved: dict[str, dict[Waiter, float]] = {}

    def admit(
        self, receipt: str, waiter: Waiter, limits: Sequence[Limit], now: float
    ) -> tuple[float | None, list[Waiter]]:
        """``(None, [])`` when every permit and the start are taken for ``receipt``; else the
        delay to park the job for, and the waiters to wake (permits taken here and released)."""
        taken: list[str] = []
        for limit in limits:
            if not isinstance(limit, ConcurrencyLimit):
                continue
            if not self._acquire(limit, receipt):
                self._wait(limit.key, waiter)
                return CONCURRENCY_RETRY_S, self._release_keys(receipt, taken)
            taken.append(limit.key)
        for limit in limits:
            if isinstance(limit, RateLimit):
                delay = self._start(limit, waiter, now)
                if delay is not None:
                    return delay, self._release_keys(receipt, taken)
        if taken:
            self._held[receipt] = taken
        return None, []

    def release(self, receipt: str) -> list[Waiter]:
        """Free ``receipt``'s permits (it was settled or reclaimed); the waiters to wake."""
        return self._release_keys(receipt, self._held.pop(receipt, []))

    def _acquire(self, limit: ConcurrencyLimit, receipt: str) -> bool:
        holders = self._holders.setdefault(limit.key, set())
        if receipt in holders or len(holders) < limit.permits:
            holders.add(receipt)
            return True
        return False

    def _wait(self, key: str, waiter: Waiter) -> None:
        line = self._waiters.setdefault(key, deque())
        if waiter not in line:
            line.append(waiter)

    def _release_keys(self, receipt: str, keys: Sequence[str]) -> list[Waiter]:
        woken: list[Waiter] = []
        for key in keys:
            holders = self._holders.get(key, set())
            if receipt in holders:
                holders.discard(receipt)
                line = self._waiters.get(key)
                if line:
                    woken.append(line.popleft())
        return woken

    def _start(self, limit: RateLimit, waiter: Waiter, now: float) -> float | None:
        """None: a start of ``limit`` is taken now; else the delay until the slot reserved."""
        reserved = self._reserved.setdefault(limit.key, {})
        slot = reserved.pop(waiter, None)
        if slot is not None and slot > now:
            reserved[waiter] = slot
            return slot - now
        if slot is not None:
            return None
        for stale in [w for w, at in reserved.items() if at < now - RESERVATION_KEPT_S]:
            del reserved[stale]
        tat = max(self._tat.get(limit.key, now), now)
        self._tat[limit.key] = tat + limit.interval_s
        if tat <= now:
            return None
        reserved[waiter] = tat
        return tat - now
