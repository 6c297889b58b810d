"""Conveyor: ``conveyor worker`` with ``async def`` jobs on the asyncio pool, or sync jobs on
the processes pool; enqueue through ``Producer``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks import work
from producer import Producer
from services.backends import open_queue
from services.registry import Registry

QUEUE = "bench"
registry = Registry()
registry.add(work.async_incr, name="incr")
registry.add(work.async_nap, name="nap")
registry.add(work.async_lat, name="lat")
sync_registry = Registry()
sync_registry.add(work.incr, name="incr")
sync_registry.add(work.nap, name="nap")
sync_registry.add(work.lat, name="lat")


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    slots = "100" if workload == "io" else "50"
    base = [sys.executable, "-m", "consumer", "--log-level", "warning", "worker", "--url"]
    base += [os.environ["BENCH_REDIS_URL"], "--queue", QUEUE]
    if options.get("pool") == "processes":
        shape = ["--pool", "processes", "--concurrency", "2", "--threads", slots]
        return [[*base, "--jobs", f"{__name__}:sync_registry", *shape]]
    shape = ["--pool", "asyncio", "--processes", "2", "--concurrency", slots]
    return [[*base, "--jobs", f"{__name__}:registry", *shape]]


@functools.cache
def _producer() -> Producer:
    return Producer(open_queue(os.environ["BENCH_REDIS_URL"]), name=QUEUE)


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    producer = _producer()
    for item in args:
        producer.enqueue(job, *item)


def enqueue_batch(job: str, count: int) -> bool:
    producer = _producer()
    for start in range(0, count, 1000):
        producer.enqueue_many([(job, (), {})] * min(1000, count - start))
    return True
