"""Every metric Conveyor exports: its name, type, help and labels, as plain data.

Code that has numbers builds ``Family`` values here (nothing imports ``prometheus_client``);
``services.metrics.exposition`` turns them into the exposition format at scrape time. Names
follow the conventions users know from celery-exporter and Dramatiq's Prometheus middleware:
the ``conveyor_`` prefix, base units (seconds), ``_total`` on counters, labels ``queue`` and
``job`` (a job's registered name, never its id: ids would make a series per job).

========================================  =========  =====================  =====================
name                                      type       labels                 from
========================================  =========  =====================  =====================
conveyor_jobs_enqueued_total              counter    queue, job             the HTTP producer
conveyor_jobs_started_total               counter    queue, job             worker processes
conveyor_jobs_finished_total              counter    queue, job, outcome    worker processes
conveyor_jobs_timed_out_total             counter    queue, job             worker processes
conveyor_job_duration_seconds             histogram  queue, job             worker processes
conveyor_job_queue_wait_seconds           histogram  queue, job             worker processes
conveyor_jobs_running                     gauge      (none)                 the supervisor
conveyor_worker_processes_desired         gauge      (none)                 the supervisor
conveyor_worker_processes_alive           gauge      (none)                 the supervisor
conveyor_worker_restarts_total            counter    (none)                 the supervisor
conveyor_queue_depth                      gauge      queue, state           the backend, at scrape
conveyor_backend_up                       gauge      (none)                 the backend, at scrape
========================================  =========  =====================  =====================

``outcome`` is one of ``done``, ``retried``, ``dead``, ``fenced``: exactly one per finished
attempt, so the outcomes add up. A timed-out attempt is finished as ``retried`` or ``dead``
like any failure, and counted in ``conveyor_jobs_timed_out_total`` besides. ``state`` is one of
``waiting``, ``delayed``, ``in_flight`` (``QueueInspector.counts``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.metrics.job_counters import Histogram, JobRow, Outcome
from services.protocol import QueueCounts


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Sample:
    """One series of a counter or gauge: its label values (in the family's order), its value."""

    labels: tuple[str, ...]
    value: float


@dataclass(frozen=True)
class HistogramSample:
    """One series of a histogram."""

    labels: tuple[str, ...]
    histogram: Histogram


@dataclass(frozen=True)
class Family:
    """One metric and its series, ready to be shown."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    samples: tuple[Sample | HistogramSample, ...] = ()


QUEUE_JOB = ("queue", "job")
_RowValue = Callable[[JobRow], float]
DEPTH_STATES = ("waiting", "delayed", "in_flight")


def job_families(rows: Iterable[JobRow]) -> list[Family]:
    """The worker processes' job metrics, from their counters summed per (queue, job)."""
    rows = list(rows)
    finished = [
        Sample((row.queue, row.job, outcome.value), row.finished[outcome])
        for row in rows
        for outcome in Outcome
    ]
    return [
        _counter("conveyor_jobs_started_total", "Jobs started.", rows, lambda r: r.started),
        Family(
            "conveyor_jobs_finished_total",
            Kind.COUNTER,
            "Job attempts finished, by outcome as the backend accepted it: done, retried, "
            "dead (dead-lettered) or fenced (another consumer had taken the job over).",
            (*QUEUE_JOB, "outcome"),
            tuple(finished),
        ),
        _counter(
            "conveyor_jobs_timed_out_total",
            "Job attempts stopped by their timeout (also finished as retried or dead).",
            rows,
            lambda r: r.timed_out,
        ),
        Family(
            "conveyor_job_duration_seconds",
            Kind.HISTOGRAM,
            "How long job attempts ran, whatever their outcome.",
            QUEUE_JOB,
            tuple(HistogramSample((row.queue, row.job), row.duration) for row in rows),
        ),
        Family(
            "conveyor_job_queue_wait_seconds",
            Kind.HISTOGRAM,
            "Time from enqueue (the producer's clock) to the start of a job's first attempt, "
            "including any delay asked at enqueue.",
            QUEUE_JOB,
            tuple(HistogramSample((row.queue, row.job), row.wait) for row in rows),
        ),
    ]


def _counter(name: str, text: str, rows: list[JobRow], value: _RowValue) -> Family:
    samples = tuple(Sample((row.queue, row.job), value(row)) for row in rows)
    return Family(name, Kind.COUNTER, text, QUEUE_JOB, samples)


def pool_families(*, desired: int, alive: int, running: int, restarts: int) -> list[Family]:
    """A supervisor's own numbers."""
    return [
        _single("conveyor_jobs_running", Kind.GAUGE, "Jobs running now.", running),
        _single(
            "conveyor_worker_processes_desired",
            Kind.GAUGE,
            "Worker processes the supervisor keeps (--concurrency, resized by SIGTTIN/SIGTTOU).",
            desired,
        ),
        _single("conveyor_worker_processes_alive", Kind.GAUGE, "Worker processes alive.", alive),
        _single(
            "conveyor_worker_restarts_total",
            Kind.COUNTER,
            "Worker processes started again after one ended (crashed, hung or recycled).",
            restarts,
        ),
    ]


def _single(name: str, kind: Kind, text: str, value: float) -> Family:
    return Family(name, kind, text, (), (Sample((), value),))


def depth_families(counts: Mapping[str, QueueCounts], *, up: bool) -> list[Family]:
    """Queue depth by state, and whether the backend answered (no depth when it did not)."""
    depth = tuple(
        Sample((queue, state), getattr(numbers, state))
        for queue, numbers in counts.items()
        for state in DEPTH_STATES
    )
    return [
        Family(
            "conveyor_queue_depth",
            Kind.GAUGE,
            "Jobs in the queue by state (waiting, delayed, in_flight), read from the backend "
            "at scrape time.",
            ("queue", "state"),
            depth,
        ),
        _single(
            "conveyor_backend_up",
            Kind.GAUGE,
            "1 if the backend answered this scrape's reads in time, else 0.",
            1 if up else 0,
        ),
    ]


class EnqueuedCounter:
    """``conveyor_jobs_enqueued_total``, counted in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], float] = {}

    def add(self, queue: str, job: str, count: int = 1) -> None:
        """``count`` jobs named ``job`` were enqueued on ``queue`` (call it once accepted)."""
        with self._lock:
            self._counts[(queue, job)] = self._counts.get((queue, job), 0) + count

    def families(self) -> list[Family]:
        with self._lock:
            samples = tuple(Sample(labels, value) for labels, value in self._counts.items())
        return [
            Family(
                "conveyor_jobs_enqueued_total",
                Kind.COUNTER,
                "Jobs enqueued (accepted by the backend).",
                QUEUE_JOB,
                samples,
            )
        ]
