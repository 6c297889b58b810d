"""Huey: ``RedisHuey`` (blocking pops, results kept: its defaults) and ``huey_consumer`` with
worker threads, the kind its documentation advises for IO-bound tasks."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huey import RedisHuey

from benchmarks import work

huey = RedisHuey("bench", url=os.environ.get("BENCH_REDIS_URL", "redis://localhost:1/0"))


@huey.task(name="incr")
def incr() -> None:
    work.incr()


@huey.task(name="nap")
def nap() -> None:
    work.nap()


@huey.task(name="lat")
def lat(enqueued_at: float) -> None:
    work.lat(enqueued_at)


TASKS = {"incr": incr, "nap": nap, "lat": lat}


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    consumer = str(Path(sys.executable).with_name("huey_consumer"))
    workers = "100" if workload == "io" else "50"
    return [[consumer, f"{__name__}.huey", "-k", "thread", "-w", workers, "-q", "-C"]]


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    task = TASKS[job]
    for item in args:
        task(*item)


def enqueue_batch(job: str, count: int) -> bool:
    return False  # no bulk enqueue in huey's API
