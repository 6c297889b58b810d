"""Small helpers shared by the contract tests: a job to put, polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from services.codec import encode_job
from services.job import Job
from services.protocol import Completion, Delivery, JobTaker

T = TypeVar("T")


def job(n: int = 0, queue: str = "default") -> tuple[str, bytes]:
    """``(job_id, body)`` of a fresh encoded job with a generated id."""
    found = Job(name="echo", args=(n,), queue=queue)
    return found.id, encode_job(found)


def poll(predicate: Callable[[], T], timeout_s: float = 5.0, interval_s: float = 0.02) -> T:
    """``predicate()`` once it is truthy, or its last value when ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval_s)
    return predicate()


def run_all(consumer: JobTaker, queue: str = "default", *, quiet_s: float = 0.3) -> list[str]:
    """Take and ack every job that becomes visible within 5 s, until none came for
    ``quiet_s``; returns the ids taken, in order (a duplicate shows up twice)."""
    taken: list[str] = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        found = consumer.get([queue], max_count=10, timeout_s=quiet_s)
        if not found and taken:
            break
        consumer.ack([Completion(d) for d in found])
        taken += [d.job_id for d in found]
    return taken


def completion(delivery: Delivery, result: bytes | None = None) -> Completion:
    """The completion of ``delivery`` (no result kept unless given)."""
    return Completion(delivery, result)
