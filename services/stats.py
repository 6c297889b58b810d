"""Counters a worker process shares with its supervisor, lock-free, in shared memory.

Each child writes its own block (one writer, so no lock and nothing a dying child can hold);
the supervisor reads every block to show progress, decide on hangs and print the summary.
Latencies go into log-spaced histograms (enqueue to settled, and enqueue to start, which the
supervisor pushes to the backend's history for the dashboard), so percentiles cost no memory
per job. When the supervisor serves metrics, a ``Stats`` also carries the seat's per-job counters
(``services.metrics.job_counters``): the ``job_*`` methods count in both at once.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from services.job import Job
from services.metrics.job_counters import JobCounters, Outcome


class Field(IntEnum):
    """Slots of a stats block."""

    HEARTBEAT = 0
    """Monotonic time of the worker loop's last turn (CLOCK_MONOTONIC is system-wide)."""
    DONE = 1
    FAILED = 2
    RETRIED = 3
    DEAD = 4
    TIMED_OUT = 5
    FENCED = 6
    RUNNING = 7
    PRODUCED = 8
    BOOTED = 9
    """1 once the child has loaded its jobs and connected: a later exit is not a boot failure."""
    STOPPING = 10
    """Written by the supervisor before it signals a stop: no job may start once it is 1."""
    ALARMS = 11
    """How many serious backend events (``JobQueue.alarms``) the child has seen."""
    PAUSED = 12
    """Written by the supervisor: which of the child's queues are paused (a bit mask, see
    ``consumer.fetching.pause_mask``); the child fetches from the others only."""


_OUTCOMES = {
    Field.DONE: Outcome.DONE,
    Field.RETRIED: Outcome.RETRIED,
    Field.DEAD: Outcome.DEAD,
    Field.FENCED: Outcome.FENCED,
}
"""The fields a settlement counts in, and their ``outcome`` label."""


_FIELDS = len(Field)
_BUCKETS = 200
_FIRST_S = 1e-5
_RATIO = 1.12  # buckets 12% wide: percentiles within ~6%, up to ~7 hours
_STARTED = _FIELDS + _BUCKETS
"""Where the enqueue-to-start histogram begins (after the enqueue-to-settled one)."""
BUCKETS = _BUCKETS
"""Buckets of a latency histogram (index: ``_bucket``; upper bound: ``bucket_upper_s``)."""


def new_block() -> Any:
    """A zeroed block in shared memory, to pass to a child as a ``Process`` argument."""
    return multiprocessing.get_context("spawn").RawArray("d", _FIELDS + 2 * _BUCKETS)


class Stats:
    """The writer's and reader's view of one block (and of per-job counters, if given)."""

    def __init__(self, block: Any, jobs: JobCounters | None = None) -> None:
        self.block = block
        self._jobs = jobs

    def add(self, field: Field, count: float = 1) -> None:
        self.block[field] += count

    def set(self, field: Field, value: float) -> None:
        self.block[field] = value

    def get(self, field: Field) -> float:
        return float(self.block[field])

    def stop_requested(self) -> bool:
        """Whether the supervisor asked this child to stop (``Field.STOPPING``)."""
        return self.get(Field.STOPPING) == 1

    def record_latency(self, seconds: float) -> None:
        self.block[_FIELDS + _bucket(seconds)] += 1

    def job_started(self, queue: str, job: Job, wall: float | None = None) -> None:
        """``job`` starts now (its executor thread calls this under the mailbox lock);
        ``wall``: ``time.time()`` if the caller read it already (once for a batch)."""
        now = time.time() if wall is None else wall
        self.block[_STARTED + _bucket(max(0.0, now - job.enqueued_at))] += 1
        if self._jobs is not None:
            self._jobs.started(queue, job)

    def job_ran(self, queue: str, job: str, duration_s: float) -> None:
        """An attempt of ``job`` ran for ``duration_s``, whatever its outcome."""
        if self._jobs is not None:
            self._jobs.ran(queue, job, duration_s)

    def job_timed_out(self, queue: str, job: str) -> None:
        self.add(Field.TIMED_OUT)
        if self._jobs is not None:
            self._jobs.timed_out(queue, job)

    def job_settled(self, field: Field, queue: str, job: str, count: int = 1) -> None:
        """The backend accepted ``count`` settlements of ``job`` (``field``: DONE, RETRIED,
        DEAD), or refused them as fenced (``Field.FENCED``)."""
        self.add(field, count)
        if self._jobs is not None:
            self._jobs.finished(queue, job, _OUTCOMES[field], count)


def _bucket(seconds: float) -> int:
    if seconds <= _FIRST_S:
        return 0
    return min(_BUCKETS - 1, 1 + int(math.log(seconds / _FIRST_S, _RATIO)))


def bucket_upper_s(index: int) -> float:
    """The upper bound (seconds) of latency bucket ``index``."""
    return float(_FIRST_S * _RATIO**index)


def percentile_s(histogram: Sequence[float], fraction: float) -> float | None:
    """The latency below which ``fraction`` of ``histogram``'s jobs fall (bucket upper bound);
    None for an empty histogram."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0.0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return bucket_upper_s(index)
    return bucket_upper_s(_BUCKETS - 1)


def started_histogram(blocks: Iterable[Any]) -> list[float]:
    """The enqueue-to-start histograms of ``blocks``, summed."""
    histogram = [0.0] * _BUCKETS
    for block in blocks:
        for index, count in enumerate(block[_STARTED : _STARTED + _BUCKETS]):
            histogram[index] += count
    return histogram


@dataclass(frozen=True)
class Totals:
    """Counters summed over blocks, with the merged latency histogram."""

    counts: dict[Field, float]
    histogram: list[float]

    def count(self, field: Field) -> int:
        return int(self.counts[field])

    def percentile_s(self, fraction: float) -> float | None:
        """The latency below which ``fraction`` of jobs finished (bucket upper bound)."""
        return percentile_s(self.histogram, fraction)


def total(blocks: Iterable[Any]) -> Totals:
    """Sum the counters and histograms of ``blocks``."""
    counts = dict.fromkeys(Field, 0.0)
    histogram = [0.0] * _BUCKETS
    for block in blocks:
        values = list(block)
        for field in Field:
            if field is not Field.HEARTBEAT:
                counts[field] += values[field]
        for index in range(_BUCKETS):
            histogram[index] += values[_FIELDS + index]
    return Totals(counts, histogram)
