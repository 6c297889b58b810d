"""SAQ: ``saq`` twice, two worker processes of 50 jobs at once each (100 for the IO workload),
``--quiet`` (no logging set-up: Python's default, WARNING); enqueue with ``Queue.enqueue``."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saq import Queue

from benchmarks import work

QUEUE = "bench"


async def incr(ctx: dict[str, Any]) -> None:
    await work.async_incr()


async def nap(ctx: dict[str, Any]) -> None:
    await work.async_nap()


async def lat(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await work.async_lat(enqueued_at)


def _settings(concurrency: int) -> dict[str, Any]:
    url = os.environ.get("BENCH_REDIS_URL", "redis://localhost:1/0")
    queue = Queue.from_url(url, name=QUEUE)
    return {"queue": queue, "functions": [incr, nap, lat], "concurrency": concurrency}


settings = _settings(50)
io_settings = _settings(100)


def worker_commands(workload: str, options: dict[str, Any]) -> list[list[str]]:
    saq_cli = str(Path(sys.executable).with_name("saq"))
    which = "io_settings" if workload == "io" else "settings"
    # Two commands of one worker each: saq's own --workers 2 did not drain here (a hang).
    return [[saq_cli, f"{__name__}.{which}", "--quiet"]] * 2


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def enqueue(job: str, args: Sequence[tuple[Any, ...]]) -> None:
    queue: Queue = settings["queue"]

    async def put() -> None:
        for item in args:
            await queue.enqueue(job, **({"enqueued_at": item[0]} if item else {}))

    _loop().run_until_complete(put())


def enqueue_batch(job: str, count: int) -> bool:
    return False  # no bulk enqueue in this saq's API
