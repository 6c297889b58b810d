"""The bare baselines of ``conveyor bench``'s pools phase: the same sleeps with no queue at all.

Each runs ``count`` sleeps of ``sleep_s``, at most ``concurrency`` at once, in this process,
and returns jobs/s. What a Conveyor pool adds (fetch, hand-off, leases, settling, the
supervisor) is what its rate falls short of these::

    bare asyncio   ``concurrency`` coroutines, each awaiting asyncio.sleep in a loop until the
                   shared count runs out
    bare threads   a ThreadPoolExecutor(concurrency), one time.sleep per submitted call
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor, wait


def bare_asyncio_rate(count: int, concurrency: int, sleep_s: float) -> float:
    """Jobs/s of ``count`` ``await asyncio.sleep(sleep_s)``, ``concurrency`` at a time."""
    return asyncio.run(_sleep_together(count, concurrency, sleep_s))


async def _sleep_together(count: int, concurrency: int, sleep_s: float) -> float:
    left = count

    async def sleeper() -> None:
        nonlocal left
        while left > 0:  # one event loop: no other coroutine runs between the test and the take
            left -= 1
            await asyncio.sleep(sleep_s)

    began = time.perf_counter()
    await asyncio.gather(*(sleeper() for _ in range(min(concurrency, count))))
    return count / (time.perf_counter() - began)


def bare_threads_rate(count: int, concurrency: int, sleep_s: float) -> float:
    """Jobs/s of ``count`` ``time.sleep(sleep_s)`` on a ``ThreadPoolExecutor(concurrency)``."""
    with ThreadPoolExecutor(concurrency) as executor:
        # One wave first, so every thread exists before the clock starts, as a pool's do.
        wait([executor.submit(time.sleep, sleep_s) for _ in range(concurrency)])
        began = time.perf_counter()
        done, _ = wait([executor.submit(time.sleep, sleep_s) for _ in range(count)])
        elapsed = time.perf_counter() - began
    for future in done:
        future.result()
    return count / elapsed
