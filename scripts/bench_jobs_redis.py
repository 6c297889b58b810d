"""Job functions for ``scripts/bench_worker.py``, loaded by spawned worker processes by path."""

from __future__ import annotations

import time

from services.registry import Registry

registry = Registry()


@registry.job
def noop() -> None:
    """Does nothing: the drain benchmark measures the machinery around a job."""


@registry.job
def started() -> float:
    """The wall-clock time the job started (compared with the job's ``enqueued_at``)."""
    return time.time()


@registry.job
def sink(payload: str) -> None:
    """Takes a payload and drops it: the enqueue and memory benchmarks' job."""
