"""The memory backend's unique keys: per queue, which job holds a key, and until when.

A key is held while its holder is held (``Statuses.held``: queued, scheduled, running, waiting
for a retry) and, with a TTL, until the TTL passes; a key whose holder finished or lapsed is
free and the next unique put takes it. Keys are dropped when found free, and swept when there
are many, so a finished job's key does not stay forever. Not thread-safe: ``MemoryState`` calls
it under its lock.
"""

from __future__ import annotations

from collections.abc import Callable

SWEEP_AT = 10_000
"""Keys kept before a claim sweeps the free ones out (then again at twice what is left)."""


class UniqueKeys:
    """Unique keys by ``(queue, key)``: the holder's id and when the key lapses (or None)."""

    def __init__(self, held: Callable[[str], bool]) -> None:
        self._held = held
        self._keys: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._sweep_at = SWEEP_AT

    def holder(self, queue: str, key: str, now: float) -> str | None:
        """The id of the live job holding ``key`` on ``queue``, or None (the key is free)."""
        found = self._keys.get((queue, key))
        if found is None:
            return None
        if self._live(found, now):
            return found[0]
        del self._keys[(queue, key)]
        return None

    def claim(self, queue: str, key: str, job_id: str, *, ttl_s: float | None, now: float) -> None:
        """Let ``job_id`` hold ``key`` on ``queue`` (free, as ``holder`` just said)."""
        self._keys[(queue, key)] = (job_id, None if ttl_s is None else now + ttl_s)
        if len(self._keys) >= self._sweep_at:
            self._keys = {k: v for k, v in self._keys.items() if self._live(v, now)}
            self._sweep_at = max(SWEEP_AT, 2 * len(self._keys))

    def _live(self, entry: tuple[str, float | None], now: float) -> bool:
        job_id, until = entry
        return (until is None or now < until) and self._held(job_id)
