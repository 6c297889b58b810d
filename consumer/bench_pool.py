"""A supervised pool that ``conveyor bench`` drives by hand: start it, turn it, count its work.

The pool is the real ``Supervisor`` with its spawned worker processes, stepped with
``run_once`` from the benchmark's own loop (as ``scripts/bench_pools.py`` does), so the
figures include every part of a real worker: fetch, the start gate, leases, settling.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from consumer.pool_shape import PoolShape
from consumer.supervisor import Supervisor, SupervisorSettings
from services.errors import ConveyorError
from services.protocol import Backend
from services.settings import WorkerSettings
from services.stats import Field, Totals, total

JOBS = "consumer.bench_jobs:registry"
POLL_S = 0.002
"""How long one turn waits for the children: the timing error of a figure, at most."""


class BenchError(ConveyorError):
    """A benchmark could not finish: the pool died, or the jobs did not all finish in time."""


@dataclass
class Clock:
    """When a batch's first and last jobs were seen done (``time.perf_counter``)."""

    first_at: float = 0.0
    first_done: int = 0
    last_at: float = 0.0


class BenchPool:
    """A ``Supervisor`` of ``shape`` serving ``queue`` on ``backend``; ``start`` spawns it."""

    def __init__(self, backend: Backend, shape: PoolShape, *, queue: str, prefetch: int) -> None:
        settings = SupervisorSettings(
            jobs=JOBS,
            shape=shape,
            worker=WorkerSettings(queues=(queue,), prefetch=prefetch),
            log_level=logging.WARNING,
        )
        self._supervisor = Supervisor(backend, settings)

    def start(self) -> float:
        """Spawn the children; returns ``time.perf_counter()`` just before."""
        began = time.perf_counter()
        self._supervisor.start()
        return began

    def totals(self) -> Totals:
        return total(s.block for s in self._supervisor.stats)

    def done(self) -> int:
        return self.totals().count(Field.DONE)

    def turn(self, wait_s: float = POLL_S) -> None:
        """One supervisor turn, waiting up to ``wait_s`` for its children."""
        if self._supervisor.exit_code is not None:
            raise BenchError(f"the worker pool stopped (exit code {self._supervisor.exit_code})")
        self._supervisor.run_once(wait_s)

    def wait_for(self, count: int, *, base: int, timeout_s: float) -> Clock:
        """Turn until ``count`` jobs more than ``base`` are done; when the first and last were."""
        clock = Clock()
        deadline = time.monotonic() + timeout_s
        while (finished := self.done() - base) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{finished} of {count} jobs done after {timeout_s:.0f} s")
            if finished and not clock.first_at:
                clock.first_at, clock.first_done = time.perf_counter(), finished
            self.turn()
        clock.last_at = time.perf_counter()
        if not clock.first_at:  # all finished within one turn
            clock.first_at, clock.first_done = clock.last_at, 0
        return clock

    def wait_booted(self, timeout_s: float = 60.0) -> None:
        """Turn until every child has loaded its jobs and connected."""
        deadline = time.monotonic() + timeout_s
        while not all(s.get(Field.BOOTED) == 1 for s in self._supervisor.stats):
            if time.monotonic() > deadline:
                raise BenchError("the worker processes did not start")
            self.turn(0.01)

    def stop(self) -> None:
        self._supervisor.stop()
        while self._supervisor.exit_code is None:
            self._supervisor.run_once(0.05)


def rate(clock: Clock, count: int) -> float:
    """Jobs/s from the first completion seen to the last (start-up and enqueue left out)."""
    elapsed = clock.last_at - clock.first_at
    if elapsed <= 0:
        raise BenchError("too few jobs to time: give more with --jobs")
    return (count - clock.first_done) / elapsed
