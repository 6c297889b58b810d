"""arq: two worker processes (one a core) of 50 jobs at once each (``max_jobs``; 100 for the
IO workload), polling every 10 ms (``poll_delay``; arq has no blocking pop, and its default
0.5 s would be its latency), results kept for arq's default hour;
``python -m benchmarks.peers.arq_peer`` runs one with logging at WARNING (the ``arq`` command
logs every job at INFO)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from arq import create_pool, run_worker
from arq.connections import ArqRedis, RedisSettings

from benchmarks import work

QUEUE = "bench"


async def incr(ctx: dict[str, Any]) -> None:
    await work.async_incr()


async def nap(ctx: dict[str, Any]) -> None:
    await work.async_nap()


async def lat(ctx: dict[str, Any], enqueued_at: float) -> None:
    await work.async_lat(enqueued_at)


def settings(max_jobs: int) -> type:
    url = os.environ["BENCH_REDIS_URL"]

    return type(
        "WorkerSettings",
        (),
        {
            "functions": [incr, nap, lat],
            "redis_settings": RedisSettings.from_dsn(url),
            "queue_name": QUEUE,
            "max_jobs": max_jobs,
            # arq polls (no blocking pop); its default 0.5 s poll delay would be its latency.
            "poll_delay": 0.01,
        },
    )


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    jobs = "100" if workload == "io" else "50"
    return [[sys.executable, "-m", __name__, jobs]] * 2


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


@functools.cache
def _pool() -> ArqRedis:
    url = os.environ["BENCH_REDIS_URL"]
    pool: ArqRedis = _loop().run_until_complete(create_pool(RedisSettings.from_dsn(url)))
    return pool


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    pool = _pool()

    async def put() -> None:
        for item in args:
            await pool.enqueue_job(job, *item, _queue_name=QUEUE)

    _loop().run_until_complete(put())


def enqueue_batch(job: str, count: int) -> bool:
    return False  # no bulk enqueue in arq's API


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_worker(settings(int(sys.argv[1])))
