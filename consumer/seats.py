"""A seat of the supervisor: one worker process at a time, with the shared memory it writes.

Each seat keeps its stats block and running board across the processes that fill it in turn;
the supervisor reads them to report progress, find hung loops and decide on restarts. Only the
child writes its block, except the fields the supervisor owns (``STOPPING``) and those it
clears while no child runs (``RUNNING``, ``BOOTED``, ``ALARMS``, before each start).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from consumer.board import RunningBoard
from consumer.restart_policy import Death
from services.stats import Field, Stats


@dataclass
class Seat:
    """One worker process seat and what the supervisor remembers about it."""

    index: int
    stats: Stats
    board: Any = None
    process: BaseProcess | None = None
    consumer_id: str = ""
    generation: int = 0
    started_at: float = 0.0
    settled_at_start: int = 0
    failures: int = 0
    idle_deaths: int = 0
    start_after: float = 0.0
    retired: bool = False
    alarms_seen: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    def settled(self) -> int:
        """Jobs settled in this seat since the supervisor began (any outcome)."""
        return sum(int(self.stats.get(f)) for f in (Field.DONE, Field.FAILED, Field.DEAD))

    def running_jobs(self) -> set[str]:
        """Ids of the jobs its process is running now (or was, when it died)."""
        return RunningBoard(self.board).job_ids() if self.board is not None else set()

    def death(
        self, exitcode: int | None, now: float, *, running: set[str], stopping: bool, burst: bool
    ) -> Death:
        """How its process ended, for ``restart_policy.decide``; ``running``: its board then."""
        settled = self.settled() - self.settled_at_start
        return Death(
            exitcode=exitcode,
            booted=bool(self.stats.get(Field.BOOTED)) or settled > 0 or bool(running),
            settled=settled,
            running=len(running),
            lived_s=now - self.started_at,
            failures=self.failures,
            idle_deaths=self.idle_deaths,
            stopping=stopping,
            burst=burst,
        )

    def prepare(self, board: Any, *, stopping: bool) -> None:
        """Fresh shared state for the next process: no stale counts from the last one."""
        self.board = board
        self.generation += 1
        self.settled_at_start = self.settled()
        self.alarms_seen = 0
        for field in (Field.RUNNING, Field.BOOTED, Field.ALARMS):
            self.stats.set(field, 0)
        self.stats.set(Field.STOPPING, 1 if stopping else 0)

    def cleared(self) -> None:
        """Its process is gone: it runs nothing now, whatever its last beat said."""
        self.process = None
        self.stats.set(Field.RUNNING, 0)

    def send(self, signum: int) -> None:
        """Signal its process if it is alive (a process that just died is not an error)."""
        if self.alive and self.process is not None and self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.send(signal.SIGKILL)
