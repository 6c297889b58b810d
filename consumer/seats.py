"""A seat of the supervisor: one worker process at a time, with the shared memory it writes.

Each seat keeps its stats block and running board across the processes that fill it in turn;
the supervisor reads them to report progress, find hung loops and decide on restarts. Only the
child writes its block, except the fields the supervisor owns (``STOPPING``) and those it
clears while no child runs (``RUNNING``, ``BOOTED``, ``ALARMS``, before each start).

``Roster`` holds the numbered seats of one supervisor. A seat a shrink removed leaves its
counters behind (the totals of the run still count its jobs) and its generation (the next seat
of that number gets new consumer ids, never one the backend may still hold jobs under).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from consumer.board import RunningBoard
from consumer.process_handle import ProcessHandle
from consumer.restart_policy import Death
from consumer.shutdown import Shutdown, Step
from services.stats import Field, Stats, new_block

log = logging.getLogger("conveyor.supervisor")


@dataclass
class Seat:
    """One worker process seat and what the supervisor remembers about it."""

    index: int
    stats: Stats
    board: Any = None
    process: ProcessHandle | None = None
    consumer_id: str = ""
    generation: int = 0
    started_at: float = 0.0
    settled_at_start: int = 0
    failures: int = 0
    idle_deaths: int = 0
    start_after: float = 0.0
    retired: bool = False
    alarms_seen: int = 0
    departure: Shutdown | None = None
    """Its own two-stage stop, once a shrink sent it away (see ``leave``)."""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    def settled(self) -> int:
        """Jobs settled in this seat since the supervisor began (any outcome)."""
        return sum(int(self.stats.get(f)) for f in (Field.DONE, Field.FAILED, Field.DEAD))

    def running_jobs(self) -> set[str]:
        """Ids of the jobs its process is running now (or was, when it died)."""
        return RunningBoard(self.board).job_ids() if self.board is not None else set()

    @property
    def leaving(self) -> bool:
        """A shrink sent it away: its process drains, then the seat is removed."""
        return self.departure is not None

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
            leaving=self.leaving,
            burst=burst,
        )

    def prepare(self, board: Any, *, stopping: bool) -> None:
        """Fresh shared state and a new consumer id for the next process: no stale counts from
        the last one, and never a name the backend may still hold jobs under."""
        self.board = board
        self.generation += 1
        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{self.index}.{self.generation}"
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
        if self.alive and self.process is not None:
            self.process.signal(signum)

    def kill(self) -> None:
        self.send(signal.SIGKILL)

    def act(self, step: Step | None) -> None:
        """Carry out a step of a stop (``consumer.shutdown``) on its process."""
        if step is Step.DRAIN:
            self.send(signal.SIGTERM)
        elif step is Step.HARD:
            # SIGQUIT, not a second SIGTERM: a child's SIGTERMs only ever drain.
            self.send(signal.SIGQUIT)
        elif step is Step.KILL and self.alive:
            log.error("worker-%d did not stop; killing it", self.index)
            self.kill()


class Roster:
    """The supervisor's seats, in number order, and what removed seats left behind."""

    def __init__(self, size: int) -> None:
        self.seats = [Seat(index, Stats(new_block())) for index in range(size)]
        self._removed: list[Stats] = []
        self._generations: dict[int, int] = {}

    def __iter__(self) -> Iterator[Seat]:
        # A copy: the loop that walks the seats may remove one.
        return iter(list(self.seats))

    def stats(self) -> list[Stats]:
        """Every seat's counters, then those of the seats removed so far."""
        return [*(seat.stats for seat in self.seats), *self._removed]

    def running(self) -> int:
        """Jobs the live children are running now (their running boards, not their prefetch)."""
        return sum(len(seat.running_jobs()) for seat in self.seats if seat.alive)

    def add(self, index: int) -> Seat:
        """A new, empty seat numbered ``index`` (its process starts when the loop fills it)."""
        seat = Seat(index, Stats(new_block()), generation=self._generations.get(index, 0))
        self.seats.append(seat)
        self.seats.sort(key=lambda each: each.index)
        return seat

    def remove(self, seat: Seat) -> None:
        """Drop a seat whose process has ended and whose jobs were reclaimed."""
        self.seats.remove(seat)
        self._removed.append(seat.stats)
        self._generations[seat.index] = seat.generation
