"""Job functions for the system fault tests (``tests/test_redis_system.py``).

Each job writes to a *ledger* file outside the queue, one line per event, with the process id
and the wall-clock time, so a test can tell which process ran a job and whether that run
overlapped a fault it injected::

    start <key> <pid> <time.time()>
    end <key> <pid> <time.time()>

Lines are short single ``write`` calls on an ``O_APPEND`` descriptor: Linux appends each one
atomically, so processes writing the same file never interleave.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from services.registry import Registry

registry = Registry()


@registry.job
def ledger(path: str, key: str, seconds: float = 0.0, spin: bool = False) -> str:
    """Append ``start`` then, after ``seconds`` (asleep, or busy holding the GIL), ``end``."""
    _append(path, "start", key)
    if spin:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    elif seconds:
        time.sleep(seconds)
    _append(path, "end", key)
    return f"{key}@{os.getpid()}"


@registry.job
def gated(path: str, key: str, gate: str, max_s: float = 60.0) -> str:
    """Append ``start``, wait until the file ``gate`` exists (at most ``max_s``), then ``end``."""
    _append(path, "start", key)
    deadline = time.monotonic() + max_s
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    _append(path, "end", key)
    return f"{key}@{os.getpid()}"


@registry.job
def kill_self(path: str, key: str) -> None:
    """A poison job: append ``start``, then SIGKILL its own process (never an ``end``)."""
    _append(path, "start", key)
    os.kill(os.getpid(), signal.SIGKILL)


def _append(path: str, event: str, key: str) -> None:
    line = f"{event} {key} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
