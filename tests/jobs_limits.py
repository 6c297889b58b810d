"""Jobs under limits for the tests with real worker processes (``tests/test_limits_*``).

Each job appends to a ledger file outside the queue (one ``O_APPEND`` write per line, atomic
across processes): ``start <key> <pid> <monotonic time>`` and ``end <key> <pid> <time>``.
``CLOCK_MONOTONIC`` is system-wide on Linux, so the times of all processes compare.
"""

from __future__ import annotations

import os
import time

from services.registry import Registry
from tests.jobs import _append  # one atomic line per write

registry = Registry()


def _stamp(path: str, what: str, key: str) -> None:
    _append(path, f"{what} {key} {os.getpid()} {time.monotonic():.6f}")


@registry.job(concurrency=2)
def pair(path: str, key: str, seconds: float) -> str:
    """At most two at once, fleet-wide: start, sleep ``seconds``, end."""
    _stamp(path, "start", key)
    time.sleep(seconds)
    _stamp(path, "end", key)
    return key


@registry.job(rate="50/s")
def paced(path: str, key: str) -> str:
    """At most 50 starts a second, fleet-wide."""
    _stamp(path, "start", key)
    return key


@registry.job(limit="bench:2")
def limited_noop() -> None:
    """As many permits as ``scripts/bench_limits.py`` has slots (two worker processes)."""


@registry.job(limit="bench-roomy:100000")
def roomy_noop() -> None:
    """More permits than any prefetch holds: only what admitting and releasing cost."""


@registry.job
def noop() -> None:
    """The same job without limits."""
