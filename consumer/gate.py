"""Whether a task may start now: the pure decision, and the gate the mailbox asks before a start.

Three rules, checked by the executor thread itself right before it starts a job, so they hold
even when that thread is the first to wake after the process was paused:

* **Stop means stop.** Once the supervisor has asked this process to stop, nothing new starts.
* **Ownership before start.** A prefetched job starts only while the backend's hold on this
  consumer's deliveries is certain (``held_until``). After a pause past the lease (SIGSTOP, GC,
  a network cut) another consumer may have the job: the worker loop asks the backend
  (``confirm``) in one call, runs what is still ours and drops the rest, unrun and unsettled.
* **A suspect runs alone.** A job handed back because a process died while running it
  (``redeliveries > 0``) starts only when nothing else runs in this process, and nothing starts
  beside it: a crasher then dies alone, and its former neighbours are not blamed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from consumer.backoff import backoff_s
from services.errors import BackendUnavailableError
from services.protocol import Delivery, JobTaker

if TYPE_CHECKING:
    from consumer.mailbox import Task

log = logging.getLogger("conveyor.worker")


class Verdict(Enum):
    """What the gate says about starting the next task."""

    START = "start"
    WAIT = "wait"
    """Not while other jobs run here (a suspect must run alone): ask again when one finishes."""
    CONFIRM = "confirm"
    """This consumer's hold may have lapsed: the worker loop must confirm ownership first."""
    STOP = "stop"
    """A stop was received: start nothing more."""


def decide(
    *,
    now: float,
    held_until: float,
    stopping: bool,
    suspect: bool,
    running: int,
    suspect_running: bool,
) -> Verdict:
    """The verdict on starting a task (``suspect``: it was redelivered after a crash)."""
    if stopping:
        return Verdict.STOP
    if now >= held_until:
        return Verdict.CONFIRM
    if suspect_running or (suspect and running > 0):
        return Verdict.WAIT
    return Verdict.START


def is_suspect(delivery: Delivery) -> bool:
    """Whether a process died while running this job before (it may be what kills processes)."""
    return delivery.redeliveries > 0


class StartGate:
    """Asked by the mailbox, under its lock, before each start; told of each start and end."""

    def __init__(
        self,
        queue: JobTaker,
        *,
        stopping: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._stopping = stopping
        self._clock = clock  # read here, at the decision: a waiting thread's time may be stale

    def verdict(self, task: Task, *, running: int, suspects_running: int) -> Verdict:
        return decide(
            now=self._clock(),
            held_until=self._queue.held_until(),
            stopping=self._stopping(),
            suspect=is_suspect(task.delivery),
            running=running,
            suspect_running=suspects_running > 0,
        )

    def started(self, task: Task) -> None:
        self._queue.started([task.delivery])

    def started_many(self, tasks: list[Task]) -> None:
        self._queue.started([task.delivery for task in tasks])

    def ended(self, task: Task) -> None:
        self._queue.started([task.delivery], running=False)

    def ended_many(self, tasks: list[Task]) -> None:
        self._queue.started([task.delivery for task in tasks], running=False)


def split_confirmed(tasks: list[Task], kept: Sequence[Delivery]) -> tuple[list[Task], list[Task]]:
    """``(still ours, handed to someone else)`` given the deliveries ``confirm`` returned."""
    receipts = {delivery.receipt for delivery in kept}
    ours = [task for task in tasks if task.delivery.receipt in receipts]
    lost = [task for task in tasks if task.delivery.receipt not in receipts]
    return ours, lost


class OwnershipCheck:
    """Once the hold may have lapsed, asks the backend (one call) which waiting tasks are ours;
    backs off while the backend is away (the gate keeps refusing those tasks meanwhile)."""

    def __init__(self, queue: JobTaker, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._queue = queue
        self._clock = clock
        self._failures = 0
        self._not_before = 0.0

    def due(self) -> bool:
        now = self._clock()
        return now >= self._queue.held_until() and now >= self._not_before

    def confirm(self, tasks: list[Task]) -> tuple[list[Task], list[Task]] | None:
        """``(ours, lost)``, or None when the backend cannot tell now (ask again later)."""
        try:
            kept = self._queue.confirm([task.delivery for task in tasks])
        except BackendUnavailableError as exc:
            self._failures += 1
            delay = backoff_s(self._failures, base_s=0.2, cap_s=5.0)
            self._not_before = self._clock() + delay
            log.warning(
                "cannot confirm %d waiting job(s) (%s); again in %.1f s", len(tasks), exc, delay
            )
            return None
        self._failures = 0
        ours, lost = split_confirmed(tasks, kept)
        if lost:
            log.warning(
                "dropped %d prefetched job(s), not run: paused past the lease, another "
                "consumer holds them now (%s)",
                len(lost),
                ", ".join(task.job.id for task in lost[:5]),
            )
        return ours, lost
