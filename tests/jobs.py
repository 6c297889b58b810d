"""Job functions the tests run, in a registry the worker processes load by path."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from services.registry import Registry

registry = Registry()


@registry.job
def echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [list(args), kwargs]


@registry.job
def add(a: int, b: int) -> int:
    return a + b


@registry.job(max_retries=2)
def fail(message: str) -> None:
    raise ValueError(message)


@registry.job
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@registry.job
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.001)
    return a + b


@registry.job
async def async_sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@registry.job(timeout=0.5)
def hang() -> None:
    time.sleep(3600)


@registry.job(timeout=0.5)
async def async_hang() -> None:
    await asyncio.sleep(3600)


@registry.job
def exit_process(code: int) -> None:
    os._exit(code)


@registry.job
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@registry.job
def spin(seconds: float) -> int:
    """CPU-bound: hold the GIL in pure Python for ``seconds``."""
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


@registry.job
def ledger(path: str, key: str, seconds: float = 0.0) -> str:
    """Append ``start key`` then ``end key`` to a file outside the queue."""
    _append(path, f"start {key}")
    if seconds:
        time.sleep(seconds)
    _append(path, f"end {key}")
    return key


@registry.job
def crash_once(path: str, key: str) -> str:
    """Kill its own process the first time it runs for ``key``; succeed after that."""
    marker = Path(path) / f"crashed-{key}"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    _append(str(Path(path) / "ledger"), f"end {key}")
    return key


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, so concurrent workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_ledger(path: str | Path) -> list[str]:
    """The lines a ledger file holds (none if it does not exist yet)."""
    file = Path(path)
    return file.read_text().splitlines() if file.exists() else []


def in_worker_process() -> bool:
    return multiprocessing.parent_process() is not None


@registry.job
def gil_hog() -> int:
    """Hold the GIL in one long C call: no other thread of the process runs meanwhile."""
    return sum(range(10**12))


class _CrashOnAccept(Registry):
    """A registry that kills its worker process while it looks up ``crash_on_accept``: a
    message that crashes a worker after it was fetched and before it ever starts running."""

    def get(self, name: str) -> Any:
        if name == "crash_on_accept" and in_worker_process():
            os.kill(os.getpid(), signal.SIGKILL)
        return super().get(name)

    def with_result_cap(self, max_result_bytes: int) -> Registry:
        capped = _CrashOnAccept()
        capped._specs = super().with_result_cap(max_result_bytes)._specs
        return capped


crash_on_accept_registry = _CrashOnAccept()
crash_on_accept_registry.job(add)


@crash_on_accept_registry.job
def crash_on_accept() -> None:
    """Never runs: looking it up in ``crash_on_accept_registry`` kills the worker."""


@registry.job(timeout=0.5, max_retries=0)
async def blocks_loop(seconds: float) -> float:
    """Blocks its event loop (a sync sleep inside ``async def``); times out, no retry."""
    time.sleep(seconds)
    return seconds


@registry.job(timeout=1.0)
async def async_nap(seconds: float) -> float:
    """A well-behaved async job with a short timeout of its own."""
    await asyncio.sleep(seconds)
    return seconds
