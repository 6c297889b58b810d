"""Job functions for ``bench_pools.py``; worker processes load ``scripts.bench_jobs:registry``.

``crunch`` does a fixed amount of work rather than spinning for a fixed time: two threads that
share the GIL then each take twice as long, which is the effect the benchmark measures. (A
time-bounded spin, like ``tests.jobs.spin``, would finish on time in any pool and hide it.)
"""

from __future__ import annotations

import asyncio
import time

from services.registry import Registry

registry = Registry()


@registry.job
def crunch(rounds: int) -> int:
    """CPU-bound: ``rounds`` turns of pure-Python arithmetic, holding the GIL throughout."""
    total = 0
    for n in range(rounds):
        total += n * n % 7
    return total


@registry.job
def nap(seconds: float) -> float:
    """IO-bound: a blocking sleep (the thread releases the GIL while it waits)."""
    time.sleep(seconds)
    return seconds


@registry.job
async def async_nap(seconds: float) -> float:
    """IO-bound, ``async def``: awaits the event loop's timer."""
    await asyncio.sleep(seconds)
    return seconds
