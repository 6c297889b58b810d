"""``HistoryStore`` in memory: the buckets of one process tree, kept in its root process.

Snapshots are kept packed (``history.pack``), as the Redis store keeps them, so both answer
alike; the merge and the cap are the protocol's (``services.protocol.history``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from services.protocol import QueueCounts
from services.protocol.history import (
    RESOLUTIONS,
    Bucket,
    LatencyBucket,
    Resolution,
    Snapshot,
    add_histograms,
    merge,
    pack,
    pack_histogram,
    snapshot_of,
    unpack,
    unpack_histogram,
)


class QueueSource(Protocol):
    """Where ``look`` reads the queues' numbers (the two reads of ``QueueGauges``' owner)."""

    def counts(self, queue: str) -> QueueCounts: ...

    def oldest_waiting_age(self, queue: str) -> float | None: ...


class MemoryHistory:
    """Per queue and resolution: bucket start -> packed snapshot, capped at ``keep``;
    ``look`` asks ``source`` (the tree's ``MemoryQueue``) for each queue's numbers now."""

    def __init__(
        self, source: QueueSource | None = None, resolutions: Sequence[Resolution] = RESOLUTIONS
    ) -> None:
        self._source = source
        self._resolutions = tuple(resolutions)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], dict[int, bytes]] = {}
        self._latency: dict[str, dict[int, bytes]] = {}

    def record(self, at: float, snapshots: Mapping[str, Snapshot]) -> None:
        with self._lock:
            for queue, snapshot in snapshots.items():
                for resolution in self._resolutions:
                    self._merge(queue, resolution, resolution.bucket(at), snapshot)

    def _merge(self, queue: str, resolution: Resolution, start: int, snapshot: Snapshot) -> None:
        kept = self._buckets.setdefault((queue, resolution.name), {})
        old = kept.get(start)
        kept[start] = pack(snapshot if old is None else merge(unpack(old), snapshot))
        _cap(kept, resolution.keep)

    def add_latency(self, at: float, histogram: Mapping[int, int]) -> None:
        with self._lock:
            for resolution in self._resolutions:
                kept = self._latency.setdefault(resolution.name, {})
                start = resolution.bucket(at)
                old = unpack_histogram(kept.get(start, b""))
                kept[start] = pack_histogram(add_histograms(old, histogram))
                _cap(kept, resolution.keep)

    def latency_history(self, resolution: Resolution) -> list[LatencyBucket]:
        with self._lock:
            kept = self._latency.get(resolution.name, {})
            return [(s, unpack_histogram(raw)) for s, raw in sorted(kept.items())]

    def history(self, queues: Sequence[str], resolution: Resolution) -> dict[str, list[Bucket]]:
        with self._lock:
            found = {q: self._buckets.get((q, resolution.name), {}) for q in queues}
            return {q: [(s, unpack(raw)) for s, raw in sorted(b.items())] for q, b in found.items()}

    def look(self, queues: Sequence[str]) -> dict[str, Snapshot]:
        source = self._source
        if source is None:
            return {}
        return {q: snapshot_of(source.counts(q), source.oldest_waiting_age(q)) for q in queues}


def _cap(kept: dict[int, bytes], keep: int) -> None:
    """Drop the oldest buckets past ``keep``."""
    for stale in sorted(kept)[: max(0, len(kept) - keep)]:
        del kept[stale]
