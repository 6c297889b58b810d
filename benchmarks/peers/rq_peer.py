"""RQ: ``rq worker`` (forks a work horse per job; or ``-w SimpleWorker``, in the worker's own
process) twice, one a core, or ``rq worker-pool -n 2``; enqueue with ``Queue.enqueue``, bulk
with ``Queue.enqueue_many`` (one pipeline). RQ runs one job at a time a process, so the IO
workload gets the same two processes (it has no in-process concurrency)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from rq import Queue

from benchmarks import work

QUEUE = "bench"
RQ = str(Path(sys.executable).with_name("rq"))
JOBS: dict[str, Callable[..., None]] = {"incr": work.incr, "nap": work.nap, "lat": work.lat}


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    url = os.environ["BENCH_REDIS_URL"]
    common = ["-u", url, "--logging_level", "WARNING", QUEUE]
    if options["worker"] == "pool":
        return [[RQ, "worker-pool", "-n", "2", "-u", url, "-l", "WARNING", QUEUE]]
    if options["worker"] == "simple":
        return [[RQ, "worker", "-w", "rq.worker.SimpleWorker", *common]] * 2
    return [[RQ, "worker", *common]] * 2


@functools.cache
def _queue() -> Queue:
    return Queue(QUEUE, connection=redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    queue, func = _queue(), JOBS[job]
    for item in args:
        queue.enqueue(func, *item)


def enqueue_batch(job: str, count: int) -> bool:
    queue, func = _queue(), JOBS[job]
    for start in range(0, count, 1000):
        queue.enqueue_many([Queue.prepare_data(func) for _ in range(min(1000, count - start))])
    return True
