"""``HistoryStore``: each queue's numbers over time, in capped per-minute and coarser buckets.

The dashboard of ``conveyor serve`` draws throughput, backlog and waiting time over the last
hour and day from these buckets; they live in the backend, so the charts survive a restart of
the service and need no database of their own. Nothing on a job's path writes them: a
*sampler* (``producer.http.sampling``, in ``conveyor serve``) reads the counters the queue
keeps anyway (the numbers of ``QueueInspector.counts`` and ``QueueGauges.oldest_waiting_age``,
for every queue at once: ``look``) every few seconds and ``record``s a ``Snapshot``::

    sampler --look(queues)--> [queue]                  (counts the backend already keeps)
    sampler --record(at, {q: snapshot})--> [q: minute buckets (120), 15-minute buckets (100)]
    dashboard --history(queues, resolution)--> buckets --> deltas of done/dead: jobs per bucket

Contract of this role (every backend; ``tests/test_history_*``):

* **Idempotent merge.** A bucket holds the *smallest* cumulative totals (``done``, ``dead``)
  and the *largest* gauges (``waiting``, ``delayed``, ``in_flight``, ``oldest_waiting_s``)
  recorded in it (``merge``). Min and max are idempotent and commutative, so several samplers
  (two services on one Redis) or one sampler retrying never double count: the totals are the
  ones at the bucket's first look, and jobs per bucket are differences between neighbours.
* **Capped.** Each resolution keeps its newest ``keep`` buckets per queue and drops older ones
  in the same step as a write; nothing grows without bound.
* **Gaps are gaps.** A bucket nobody sampled is missing, never made up; readers draw a gap.

Enqueue-to-start latency, fleet-wide (the workers' histogram is not per queue), comes from the
other side: each supervisor pushes what its workers' enqueue-to-start histogram
(``services.stats``) grew by since its last push (``consumer.latency_push``)::

    supervisor --add_latency(at, {bucket index: jobs})--> [minute (120), quarter (100) buckets]
    dashboard --latency_history(resolution)--> buckets --> p50/p95/p99 (``producer.http.charts``)

These buckets are **additive** (counts add up; each supervisor pushes each job once) and capped
like the snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

from services.protocol.records import QueueCounts


@dataclass(frozen=True)
class Resolution:
    """Buckets ``width_s`` seconds wide, the newest ``keep`` of them kept per queue."""

    name: str
    width_s: int
    keep: int

    def bucket(self, at: float) -> int:
        """The start (epoch seconds) of the bucket that holds time ``at``."""
        return int(at // self.width_s) * self.width_s


MINUTE = Resolution("minute", 60, 120)
"""Two hours of minutes: the hour chart, with room for a late sampler."""
QUARTER = Resolution("quarter", 900, 100)
"""25 hours of quarter-hours: the day chart. 100 (not 144 ten-minute buckets) keeps the Redis
hash under the default ``hash-max-listpack-entries`` (128), its compact encoding."""
RESOLUTIONS = (MINUTE, QUARTER)


@dataclass(frozen=True)
class Snapshot:
    """One look at a queue: its totals since the backend began and its gauges now."""

    done: int = 0
    dead: int = 0
    waiting: int = 0
    delayed: int = 0
    in_flight: int = 0
    oldest_waiting_ms: int = 0
    """Age of the job at the head of the queue (0: none waits): how long the next job to
    start has waited, the queue's enqueue-to-start latency as Sidekiq defines it."""


def snapshot_of(counts: QueueCounts, oldest_waiting_s: float | None) -> Snapshot:
    """A snapshot from a queue's counts and its oldest waiting job's age (None: none waits)."""
    return Snapshot(
        done=counts.done,
        dead=counts.dead,
        waiting=counts.waiting,
        delayed=counts.delayed,
        in_flight=counts.in_flight,
        oldest_waiting_ms=0 if oldest_waiting_s is None else round(oldest_waiting_s * 1000),
    )


_TOTALS = 2
"""The first fields of ``Snapshot`` are cumulative totals (merged by min), the rest gauges."""


def merge(old: Snapshot, new: Snapshot) -> Snapshot:
    """One bucket's snapshot from two looks: smallest totals, largest gauges (idempotent)."""
    values = [
        (min if i < _TOTALS else max)(a, b)
        for i, (a, b) in enumerate(zip(pack_values(old), pack_values(new), strict=True))
    ]
    return Snapshot(*values)


def pack_values(snapshot: Snapshot) -> tuple[int, ...]:
    """The snapshot's numbers in field order."""
    return tuple(getattr(snapshot, f.name) for f in fields(Snapshot))


def pack(snapshot: Snapshot) -> bytes:
    """The stored form: the numbers joined by commas (what the Redis script merges)."""
    return ",".join(str(v) for v in pack_values(snapshot)).encode()


def unpack(raw: bytes | str) -> Snapshot:
    """A stored snapshot; missing trailing numbers (an older layout) read as 0."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return Snapshot(*(int(v) for v in text.split(",")[: len(fields(Snapshot))]))


Bucket = tuple[int, Snapshot]
"""(bucket start in epoch seconds, the bucket's merged snapshot)."""

Histogram = dict[int, int]
"""A latency histogram: bucket index (``services.stats``' buckets) -> jobs; zeros left out."""
LatencyBucket = tuple[int, Histogram]
"""(bucket start in epoch seconds, the jobs that started in it, by latency bucket)."""


def pack_histogram(histogram: Mapping[int, int]) -> bytes:
    """The stored form: ``index:count`` pairs joined by commas, zeros left out."""
    return ",".join(f"{i}:{c}" for i, c in sorted(histogram.items()) if c).encode()


def unpack_histogram(raw: bytes | str) -> Histogram:
    """A stored histogram (empty text: no jobs)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    pairs = (pair.split(":") for pair in text.split(",") if pair)
    return {int(i): int(c) for i, c in pairs}


def add_histograms(a: Mapping[int, int], b: Mapping[int, int]) -> Histogram:
    """The sum of two histograms."""
    return {i: a.get(i, 0) + b.get(i, 0) for i in sorted(set(a) | set(b))}


@runtime_checkable
class HistoryStore(Protocol):
    """Capped per-queue buckets of snapshots, at every resolution of ``RESOLUTIONS``."""

    def record(self, at: float, snapshots: Mapping[str, Snapshot]) -> None:
        """Merge each queue's snapshot, taken at epoch second ``at``, into its buckets."""

    def history(self, queues: Sequence[str], resolution: Resolution) -> dict[str, list[Bucket]]:
        """The kept buckets of each queue at ``resolution``, oldest first."""

    def look(self, queues: Sequence[str]) -> dict[str, Snapshot]:
        """Each queue's snapshot now: its counts and its oldest waiting job's age, read for all
        the queues at once (one round trip on Redis), for the sampler and the dashboard."""

    def add_latency(self, at: float, histogram: Mapping[int, int]) -> None:
        """Add ``histogram`` (jobs that started, by enqueue-to-start latency bucket, across
        the fleet) to the buckets holding epoch second ``at``. Additive: add each job once."""

    def latency_history(self, resolution: Resolution) -> list[LatencyBucket]:
        """The kept latency buckets at ``resolution``, oldest first."""


@runtime_checkable
class KeepsHistory(Protocol):
    """A backend that keeps history hands out its store (as ``Backend.fleet()`` does)."""

    def history_store(self) -> HistoryStore:
        """The backend's ``HistoryStore`` on this connection's clients (the same each call)."""
