"""Per-job counters a worker process writes into shared memory, for its supervisor's ``/metrics``.

One block per seat (like ``services.stats``), laid out by ``JobLabels``: one row of cells per
(queue, job) pair the metrics can name, so the child never sends a label over a pipe and the
supervisor reads every row at scrape time without asking the child anything::

    row (queue, job):  started | timed_out | done retried dead fenced |
                       duration: one cell per bucket, sum | queue wait: one cell per bucket, sum

The label table is fixed before the children start: the supervisor's queues, and the job names
of its registry plus ``UNREGISTERED`` (a message naming a job the registry lacks, or none at
all). A label never holds a job id, and the memory a block takes is known up front.

Each cell has one writer: ``started`` and the queue-wait cells are written by the executor
thread that starts the job, under its mailbox's lock; every other cell by the worker loop. A
seat keeps its block across the processes that fill it in turn, so a restarted child goes on
counting where the last one stopped: counts never go backwards, and a child killed mid-job
leaves behind everything it had counted (what it had not settled is counted by whichever
process settles it).
"""

from __future__ import annotations

import bisect
import math
import multiprocessing
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from services.job import Job

UNREGISTERED = "(unregistered)"
"""The ``job`` label of messages naming no job of the registry (they are dead-lettered)."""

BUCKETS_S = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, math.inf),
)
"""Upper bounds of the duration and queue-wait histograms, in seconds: Prometheus's default
buckets, stretched to an hour for long jobs and deep backlogs."""


class Outcome(StrEnum):
    """How one attempt of a job ended, as the backend accepted it (the ``outcome`` label)."""

    DONE = "done"
    RETRIED = "retried"
    DEAD = "dead"
    FENCED = "fenced"
    """Its settlement was refused: another consumer had taken the job over (lease lost)."""


class _Cell(IntEnum):
    STARTED = 0
    TIMED_OUT = 1
    DONE = 2
    RETRIED = 3
    DEAD = 4
    FENCED = 5


_OUTCOME_CELLS = {outcome: _Cell[outcome.name] for outcome in Outcome}
_HISTOGRAM = len(BUCKETS_S) + 1  # one cell per bucket, then the sum
_DURATION = len(_Cell)
_WAIT = _DURATION + _HISTOGRAM
_ROW = _WAIT + _HISTOGRAM


@dataclass(frozen=True)
class JobLabels:
    """The (queue, job) pairs a supervisor's metrics name; plain data, it goes to children."""

    queues: tuple[str, ...]
    jobs: tuple[str, ...]
    """Registered job names; ``UNREGISTERED`` is added as the last row of each queue."""

    @property
    def rows(self) -> list[tuple[str, str]]:
        """Every (queue, job) pair, in block order."""
        return [(queue, job) for queue in self.queues for job in (*self.jobs, UNREGISTERED)]

    def new_block(self) -> Any:
        """A zeroed block in shared memory for one seat, to pass to its children."""
        return multiprocessing.get_context("spawn").RawArray("d", len(self.rows) * _ROW)


@dataclass(frozen=True)
class Histogram:
    """One label pair's histogram: observations per bucket (not cumulative) and their sum."""

    counts: tuple[float, ...]
    sum: float

    @property
    def count(self) -> float:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, float]]:
        """``(upper bound, observations at or below it)`` per bucket, as Prometheus shows."""
        running, found = 0.0, []
        for bound, count in zip(BUCKETS_S, self.counts, strict=True):
            running += count
            found.append((bound, running))
        return found


@dataclass(frozen=True)
class JobRow:
    """The counts of one (queue, job) pair, summed over blocks."""

    queue: str
    job: str
    started: float
    timed_out: float
    finished: dict[Outcome, float]
    duration: Histogram
    wait: Histogram


class JobCounters:
    """One seat's counters: the child writes them, ``read_rows`` sums them for a scrape."""

    def __init__(self, labels: JobLabels, block: Any = None) -> None:
        self.labels = labels
        self.block = block if block is not None else labels.new_block()
        """Shared memory: pass this object to the child in its spec (spawn-safe)."""
        self._index = {pair: number * _ROW for number, pair in enumerate(labels.rows)}

    def started(self, queue: str, job: Job) -> None:
        """``job`` (taken from ``queue``) starts now; a first attempt's wait is observed.

        The wait runs from the producer's ``enqueued_at`` (its wall clock; a negative skew
        counts as 0) to now. A retry keeps the first attempt's ``enqueued_at``, so its wait
        would include earlier runs and the backoff: retries are not observed.
        """
        row = self._row(queue, job.name)
        self.block[row + _Cell.STARTED] += 1
        if job.attempt == 0:
            self._observe(row + _WAIT, max(0.0, time.time() - job.enqueued_at))

    def ran(self, queue: str, job: str, duration_s: float) -> None:
        """An attempt of ``job`` ran for ``duration_s`` (whatever its outcome)."""
        self._observe(self._row(queue, job) + _DURATION, duration_s)

    def timed_out(self, queue: str, job: str) -> None:
        self.block[self._row(queue, job) + _Cell.TIMED_OUT] += 1

    def finished(self, queue: str, job: str, outcome: Outcome, count: int = 1) -> None:
        """``count`` attempts of ``job`` were settled with ``outcome`` by the backend."""
        self.block[self._row(queue, job) + _OUTCOME_CELLS[outcome]] += count

    def _row(self, queue: str, job: str) -> int:
        found = self._index.get((queue, job))
        if found is None:  # a job outside the registry (it is dead-lettered)
            # Deliveries come from the supervisor's queues, which are the labels' queues; a
            # stray name (none expected) is counted rather than lost, under the first row.
            found = self._index.get((queue, UNREGISTERED), 0)
        return found

    def _observe(self, start: int, seconds: float) -> None:
        self.block[start + bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.block[start + len(BUCKETS_S)] += seconds


def read_rows(labels: JobLabels, seats: Iterable[JobCounters]) -> Iterator[JobRow]:
    """Every (queue, job) pair's counts summed over ``seats`` (all laid out by ``labels``)."""
    totals = [0.0] * (len(labels.rows) * _ROW)
    for seat in seats:
        for index, value in enumerate(seat.block[:]):  # one copy of the shared memory per seat
            totals[index] += value
    for number, (queue, job) in enumerate(labels.rows):
        cells = totals[number * _ROW : (number + 1) * _ROW]
        yield JobRow(
            queue=queue,
            job=job,
            started=cells[_Cell.STARTED],
            timed_out=cells[_Cell.TIMED_OUT],
            finished={outcome: cells[cell] for outcome, cell in _OUTCOME_CELLS.items()},
            duration=_histogram(cells[_DURATION:_WAIT]),
            wait=_histogram(cells[_WAIT:_ROW]),
        )


def _histogram(cells: list[float]) -> Histogram:
    return Histogram(counts=tuple(cells[:-1]), sum=cells[-1])
