"""Shared set-up for the tests that drive a real, in-process ``Supervisor``.

A test module imports the fixtures it wants and lists them in its ``__all__`` (pytest finds
fixtures by name in the module): ``queue`` is a memory queue; ``queue_on_each_backend``
provides a fixture also named ``queue``, run once on memory and once on the session's
redis-server, so a module imports one or the other. ``supervise`` starts a supervisor with fast
test settings and remembers it, so the autouse ``no_child_outlives_its_test`` can stop it and
kill its children even when the test failed (pytest would otherwise wait for them).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import Supervisor, SupervisorSettings
from services.backends import open_queue
from services.protocol import JobQueue
from services.settings import QueueSettings, RetrySettings, WorkerSettings
from services.stats import Field, total

_started: list[Supervisor] = []

TWO_PROCESSES = SupervisorSettings(
    jobs="tests.jobs:registry",
    shape=shape_pool(PoolKind.PROCESSES, 2, threads=2),
    worker=WorkerSettings(poll_s=0.1, prefetch=4, retry=RetrySettings(0.01, 0.05)),
    restart_base_s=0.05,
    restart_cap_s=0.2,
)
"""Two worker processes of two threads, fast restarts: the pool the kill tests SIGKILL."""


@pytest.fixture(autouse=True)
def no_child_outlives_its_test() -> Iterator[None]:
    """A failed test must not leave worker processes behind (pytest would wait for them)."""
    yield
    while _started:
        supervisor = _started.pop()
        for pid in supervisor.pids():
            os.kill(pid, signal.SIGKILL)
        if supervisor.exit_code is None:
            supervisor.stop_now()
            deadline = time.monotonic() + 10
            while supervisor.exit_code is None and time.monotonic() < deadline:
                supervisor.run_once(0.05)


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    """A memory queue: three redeliveries, results kept for a minute."""
    found = open_queue("memory://", QueueSettings(result_ttl_s=60, max_redeliveries=3))
    yield found
    found.close()


@pytest.fixture(params=["memory", "redis"], name="queue")
def queue_on_each_backend(request: pytest.FixtureRequest) -> Iterator[JobQueue]:
    """A queue on the memory backend, then on Redis: 2 s lease, results kept 10 minutes."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    found = open_queue(url, QueueSettings(lease_s=2.0, result_ttl_s=600))
    yield found
    found.close()


def supervise(
    queue: JobQueue,
    *,
    pool: PoolKind = PoolKind.PROCESSES,
    concurrency: int = 1,
    jobs_path: str = "tests.jobs:registry",
    clock: Callable[[], float] = time.monotonic,
    hang_timeout_s: float = 60.0,
    **worker: object,
) -> Supervisor:
    """Start a supervisor with fast polls, retries and restarts; ``worker`` overrides settings."""
    options: dict[str, object] = {
        "poll_s": 0.1,
        "retry": RetrySettings(base_s=0.01, cap_s=0.05),
        "shutdown_timeout_s": 5.0,
    }
    options.update(worker)
    settings = SupervisorSettings(
        jobs=jobs_path,
        shape=shape_pool(pool, concurrency),
        worker=WorkerSettings(**options),  # type: ignore[arg-type]
        restart_base_s=0.05,
        restart_cap_s=0.5,
        hang_timeout_s=hang_timeout_s,
    )
    supervisor = Supervisor(queue, settings, clock=clock)
    _started.append(supervisor)
    supervisor.start()
    return supervisor


def turn_until(supervisor: Supervisor, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Turn the supervisor's loop until ``done()``; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        supervisor.run_once(0.05)


def stop(supervisor: Supervisor, timeout_s: float = 20.0) -> int:
    """Ask for the (draining) stop, turn the loop until it exits, return the exit code."""
    supervisor.stop()
    turn_until(supervisor, lambda: supervisor.exit_code is not None, timeout_s)
    assert supervisor.exit_code is not None
    return supervisor.exit_code


def count(supervisor: Supervisor, field: Field) -> int:
    """``field`` summed over every child's stats block."""
    return total(s.block for s in supervisor.stats).count(field)


def stop_supervisor(supervisor: Supervisor, timeout_s: float = 20.0) -> None:
    """Stop at once (a drain request, then the second, hard one) and turn the loop until the
    supervisor exits or ``timeout_s`` passes; the caller checks the outcome."""
    supervisor.stop()
    supervisor.stop()
    deadline = time.monotonic() + timeout_s
    while supervisor.exit_code is None and time.monotonic() < deadline:
        supervisor.run_once(0.1)
