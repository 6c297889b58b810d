"""Jobs the RQ interoperability tests run, by RQ function path (``tests.rq_jobs.<name>``).

``registry`` allows ``add`` and ``boom`` by their own ``module.qualname``, ``resize`` by the
``rq_name`` it declares, and ``slow`` (which writes a line when it starts, so a test can kill
its worker mid-job). ``tests.rq_forbidden`` is deliberately not registered: importing it
records the import, which proves a refused job was never imported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.registry import Registry

registry = Registry()


@registry.job
def add(a: int, b: int) -> int:
    return a + b


@registry.job(max_retries=0)
def boom(message: str) -> None:
    raise RuntimeError(message)


@registry.job(name="resize", rq_name="myapp.jobs.resize")
def resize(path: str, width: int) -> str:
    return f"{path}@{width}"


@registry.job(max_retries=0)
def slow(marker: str, seconds: float) -> str:
    """Write ``marker`` (its pid) when it starts, then sleep ``seconds``."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@registry.job(max_retries=2)
def flaky(marker: str) -> int:
    """Fail until ``marker`` holds two lines, then return the count of tries."""
    path = Path(marker)
    tries = len(path.read_text().splitlines()) + 1 if path.exists() else 1
    path.write_text("x\n" * tries)
    if tries < 3:
        raise RuntimeError(f"try {tries}")
    return tries


def noop() -> None:
    """For the benchmark: RQ workers import it; Conveyor runs it by module.qualname."""


registry.add(noop)
