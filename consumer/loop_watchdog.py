"""Finds the job that blocks an event loop, and keeps its neighbours from paying for it.

An ``async def`` job that blocks (a sync sleep, a CPU loop, a blocking client) stops every other
job on its loop. Their timeouts, measured by the worker from ``Task.started_at``, would expire
together and each would burn an attempt. The watchdog::

    loop thread:      heartbeat every BEAT_S                 (``beat``, on the loop)
    watchdog thread:  heartbeat older than STALL_S?          (``check``, every BEAT_S)
                      -> the asyncio task running now is the culprit: name it once in the log
                      -> push every *other* running task's ``started_at`` forward by the time
                         the loop stood still, so the stall is not charged to them

The culprit's clock keeps running: the worker times it out (an attempt, as for any hung job)
and recycles the process; its neighbours are then handed back uncharged if the loop is still
blocked when the drain ends, or finish normally if it came free. ``stall`` tells the worker
which task blocks the loop and for how long.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from consumer.mailbox import Mailbox, Task

log = logging.getLogger("conveyor.worker")

BEAT_S = 0.05
STALL_S = 0.25
"""A loop whose heartbeat is older than this is blocked (not merely busy or descheduled)."""


@dataclass(frozen=True)
class Stall:
    """The loop is blocked by ``task`` since ``since`` (monotonic)."""

    task: Task
    since: float

    def seconds(self, now: float) -> float:
        return now - self.since


class LoopWatchdog:
    """Watches one event loop from its own thread (see the module docstring)."""

    def __init__(
        self,
        mailbox: Mailbox,
        culprit: Callable[[], Task | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mailbox = mailbox
        self._culprit = culprit
        self._clock = clock
        self._beat_at = clock()
        self._credited_to = 0.0
        self._stopped = threading.Event()
        self.stall: Stall | None = None
        """The current stall, or None while the loop turns."""

    def beat(self) -> None:
        """Called on the loop every ``BEAT_S``."""
        self._beat_at = self._clock()

    async def beating(self) -> None:
        """The loop-side heartbeat, as a task on the watched loop."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_S)

    def start(self) -> None:
        thread = threading.Thread(target=self._watch, name="conveyor-loop-watchdog", daemon=True)
        thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(BEAT_S):
            self.check()

    def check(self) -> None:
        """One look at the heartbeat: notice, blame and credit a stall, or its end."""
        now, beat_at = self._clock(), self._beat_at
        if now - beat_at <= STALL_S:
            if self.stall is not None:
                log.warning("event loop free again after %.1f s", now - self.stall.since)
                self.stall = None
            return
        if self.stall is None:
            culprit = self._culprit()
            if culprit is None:
                return  # blocked outside any job: nobody to blame, nobody to credit
            self.stall = Stall(culprit, since=beat_at)
            self._credited_to = beat_at
            log.warning(
                "job %s (%s) blocks the event loop (a blocking call in async code?); "
                "the jobs sharing the loop are not charged for the wait",
                culprit.job.id,
                culprit.job.name,
            )
        self._credit(now)

    def _credit(self, now: float) -> None:
        assert self.stall is not None
        paused = now - self._credited_to
        self._credited_to = now
        for task in self._mailbox.running():
            if task is not self.stall.task and task.started_at is not None:
                task.started_at += paused
