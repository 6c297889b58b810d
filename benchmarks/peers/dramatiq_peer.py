"""Dramatiq: its CLI with 2 processes of 50 threads, the Redis broker with its default
middleware (retries, time and age limits); actors send with ``Actor.send``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks import work

QUEUE = "bench"
broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://localhost:1/0"))
dramatiq.set_broker(broker)
# Its CLI has no level flag: the worker processes import this module, so it is set here.
logging.getLogger("dramatiq").setLevel(logging.WARNING)


@dramatiq.actor(queue_name=QUEUE, actor_name="incr")
def incr() -> None:
    work.incr()


@dramatiq.actor(queue_name=QUEUE, actor_name="nap")
def nap() -> None:
    work.nap()


@dramatiq.actor(queue_name=QUEUE, actor_name="lat")
def lat(enqueued_at: float) -> None:
    work.lat(enqueued_at)


ACTORS: dict[str, Any] = {"incr": incr, "nap": nap, "lat": lat}


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    dramatiq_cli = str(Path(sys.executable).with_name("dramatiq"))
    return [[dramatiq_cli, __name__, "-p", "2", "-t", "50", "-Q", QUEUE]]


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    actor = ACTORS[job]
    for item in args:
        actor.send(*item)


def enqueue_batch(job: str, count: int) -> bool:
    return False  # no bulk send in dramatiq's API
