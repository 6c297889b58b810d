"""Celery: ``celery worker`` on the prefork pool (one process a core) or the threads pool,
Redis as the broker, no result backend (Celery's default); gossip, mingle and the worker
heartbeat off (the documented way to cut broker chatter of a worker that needs no events);
for many short tasks a higher prefetch multiplier, as Celery's optimizing guide advises."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery

from benchmarks import work

QUEUE = "bench"
app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://localhost:1/0"))
app.conf.task_default_queue = QUEUE
app.conf.worker_prefetch_multiplier = 16
app.conf.broker_connection_retry_on_startup = True


@app.task(name="incr")
def incr() -> None:
    work.incr()


@app.task(name="nap")
def nap() -> None:
    work.nap()


@app.task(name="lat")
def lat(enqueued_at: float) -> None:
    work.lat(enqueued_at)


TASKS = {"incr": incr, "nap": nap, "lat": lat}


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    if options["pool"] == "prefork":
        shape = ["-P", "prefork", "-c", "100" if workload == "io" else "2"]
    else:
        shape = ["-P", "threads", "-c", "100" if workload == "io" else "50"]
    quiet = ["--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return [[sys.executable, "-m", "celery", "-A", __name__, "worker", "-Q", QUEUE, *shape, *quiet]]


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    task = TASKS[job]
    for item in args:
        task.apply_async(item)


def enqueue_batch(job: str, count: int) -> bool:
    return False  # a group or chunks still sends one message per call, one by one
