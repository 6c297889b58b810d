"""The built-in demo: a few real jobs and a feed that mixes them, for ``conveyor run``.

``--jobs services.demo:registry --feed services.demo:feed`` are the defaults: CPU-bound hashing,
IO-bound waits (sync and async), a flaky job that often succeeds on retry and one that always
fails, so a first run shows done, retried and dead-lettered jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Iterator
from typing import Any

from services.registry import Registry

registry = Registry()


@registry.job
def checksum(rounds: int, seed: str = "conveyor") -> str:
    """CPU-bound: chain ``rounds`` SHA-256 hashes (about 1 µs each)."""
    digest = seed.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


@registry.job
def download(seconds: float) -> float:
    """IO-bound: stands for a network call that takes ``seconds``."""
    time.sleep(seconds)
    return seconds


@registry.job
async def fetch(seconds: float) -> float:
    """IO-bound and ``async def``: awaits for ``seconds``."""
    await asyncio.sleep(seconds)
    return seconds


@registry.job(max_retries=4)
def flaky(failure_rate: float) -> str:
    """Fails at random; usually succeeds after a retry or two."""
    if random.random() < failure_rate:
        raise ConnectionError("flaky upstream refused the connection")
    return "ok"


@registry.job(max_retries=2)
def broken(reason: str) -> None:
    """Always raises: ends in the dead letters with its traceback."""
    raise ValueError(reason)


def feed(
    count: int = 300, *, producer_index: int = 0, producer_count: int = 1
) -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """This producer's share of ``count`` demo jobs (every ``producer_count``-th one)."""
    picker = random.Random(producer_index)
    for number in range(producer_index, count, producer_count):
        roll = picker.random()
        if roll < 0.40:
            yield "checksum", (picker.randint(2_000, 8_000),), {"seed": f"job-{number}"}
        elif roll < 0.70:
            yield "download", (round(picker.uniform(0.005, 0.03), 3),), {}
        elif roll < 0.85:
            yield "fetch", (round(picker.uniform(0.005, 0.03), 3),), {}
        elif roll < 0.97:
            yield "flaky", (0.5,), {}
        else:
            yield "broken", (f"demo job {number} is broken on purpose",), {}
