"""The jobs ``conveyor bench`` runs (``consumer.bench_jobs:registry``), one per job kind.

``incr`` does one Redis ``INCR`` on a key of its own, the job the comparison harness
(``benchmarks/``) gives every system: the benchmark checks the counter against the job count,
so a job cannot be skipped. ``cpu`` does a fixed amount of work rather than spinning for a
fixed time, so two jobs that share one GIL take twice as long (the effect it measures).
"""

from __future__ import annotations

import asyncio
import functools
import time

from services.backends import ServerProbe, open_probe
from services.errors import ConfigError
from services.registry import Registry

registry = Registry()


@registry.job
def noop() -> None:
    """Does nothing: the figure is the machinery around a job."""


@registry.job
def sink(payload: str) -> None:
    """Takes a payload and drops it: the enqueue and memory benchmarks' job."""


@registry.job
def started() -> float:
    """The wall-clock time the job started: the latency phase compares it with its enqueue."""
    return time.time()


@registry.job
def incr(url: str, key: str) -> int:
    """One Redis ``INCR`` of ``key`` on the server ``url`` names."""
    return _probe(url).incr(key)


@registry.job
def nap(seconds: float) -> None:
    """IO-bound: a blocking sleep (the thread releases the GIL while it waits)."""
    time.sleep(seconds)


@registry.job
async def async_nap(seconds: float) -> None:
    """IO-bound, ``async def``: the asyncio pool's sleep."""
    await asyncio.sleep(seconds)


@registry.job
def crunch(rounds: int) -> int:
    """CPU-bound: ``rounds`` turns of pure-Python arithmetic, holding the GIL throughout."""
    total = 0
    for n in range(rounds):
        total += n * n % 7
    return total


@functools.cache
def _probe(url: str) -> ServerProbe:
    # One client per worker process and URL, made on the first job: the job's cost is the
    # INCR, not a connection.
    probe = open_probe(url)
    if probe is None:
        raise ConfigError(f"the incr job needs a Redis server; {url!r} has none")
    return probe
