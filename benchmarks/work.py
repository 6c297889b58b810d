"""The work every job does, in every system alike: one Redis ``INCR`` of a counter key.

A job of the ``nap`` kind sleeps 10 ms first (IO-bound); a ``lat`` job also records how long
after its enqueue it started (``RPUSH`` of the delay, in seconds). The harness then reads the
counter: it must equal the job count, so no system can skip a job. The server comes from
``BENCH_REDIS_URL``, which the harness sets for every worker it starts; each process keeps one
client (sync, or asyncio for the async peers).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time

import redis
import redis.asyncio

COUNTER = "bench:counter"
LATENCIES = "bench:latencies"
NAP_S = 0.01


@functools.cache
def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@functools.cache
def async_client() -> redis.asyncio.Redis:
    # One per process; the async peers run one event loop per process.
    return redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def incr() -> None:
    client().incr(COUNTER)


def nap() -> None:
    time.sleep(NAP_S)
    client().incr(COUNTER)


def lat(enqueued_at: float) -> None:
    started = time.time()
    with client().pipeline(transaction=False) as pipe:
        pipe.rpush(LATENCIES, started - enqueued_at)
        pipe.incr(COUNTER)
        pipe.execute()


async def async_incr() -> None:
    await async_client().incr(COUNTER)


async def async_nap() -> None:
    await asyncio.sleep(NAP_S)
    await async_client().incr(COUNTER)


async def async_lat(enqueued_at: float) -> None:
    started = time.time()
    async with async_client().pipeline(transaction=False) as pipe:
        pipe.rpush(LATENCIES, started - enqueued_at)
        pipe.incr(COUNTER)
        await pipe.execute()
