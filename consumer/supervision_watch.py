"""What the supervisor watches besides its children's lives: backend health and progress.

* Setup warnings (``JobQueue.check_server``) every ``check_every_s``.
* Alarms: serious backend events (a Redis that restarted empty lost jobs). Every child counts
  those it saw in ``Field.ALARMS``; the supervisor's own connection keeps its own
  (``JobQueue.alarms``). Each new one is logged at ERROR and kept for good in ``warnings``.
* A progress line now and then: totals, jobs running now and the recent rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from consumer.seats import Seat
from services.errors import ConveyorError
from services.protocol import JobQueue
from services.stats import Field, total

log = logging.getLogger("conveyor.supervisor")

CHECK_EVERY_S = 30.0


class Watch:
    """The supervisor's periodic checks; ``turn`` runs on every loop iteration, cheaply."""

    def __init__(
        self,
        queue: JobQueue,
        seats: Sequence[Seat],
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self._queue = queue
        self._seats = seats
        self._clock = clock
        self._check_every_s = check_every_s
        self._next_check = 0.0
        self._setup: list[str] = []
        self._alarms: list[str] = []
        self._last_report = (0, clock())

    @property
    def warnings(self) -> list[str]:
        """The latest setup warnings, then every alarm seen so far (sticky)."""
        return [*self._setup, *self._alarms]

    def turn(self, *, running: int) -> None:
        """Read the children's alarm counters; check the backend and report when due."""
        self._child_alarms()
        if self._clock() >= self._next_check:
            self.check_backend()
            self._report(running)

    def check_backend(self) -> None:
        """Ask the backend for setup warnings and alarms (failing to reach it is not fatal:
        the workers log and retry on their own)."""
        self._next_check = self._clock() + self._check_every_s
        try:
            self._setup = self._queue.check_server()
            alarms = self._queue.alarms()
        except ConveyorError as exc:
            log.warning("cannot check the backend: %s", exc)
            return
        for text in alarms:
            self._alarm(text)

    def _child_alarms(self) -> None:
        for seat in self._seats:
            seen = int(seat.stats.get(Field.ALARMS))
            if seen > seat.alarms_seen:
                self._alarm(
                    f"worker-{seat.index} saw {seen} backend alarm(s) (lost data?): see its log"
                )
                seat.alarms_seen = seen

    def _alarm(self, text: str) -> None:
        if text not in self._alarms:
            log.error("backend alarm: %s", text)
            self._alarms.append(text)

    def _report(self, running: int) -> None:
        """A progress line for the logs of a long-running worker: totals and the recent rate."""
        totals = total(seat.stats.block for seat in self._seats)
        settled = totals.count(Field.DONE) + totals.count(Field.DEAD)
        now = self._clock()
        last_settled, last_at = self._last_report
        self._last_report = (settled, now)
        if settled == last_settled:
            return
        log.info(
            "done %d, failed %d, retried %d, dead-lettered %d, running %d (%.1f jobs/s)",
            totals.count(Field.DONE),
            totals.count(Field.FAILED),
            totals.count(Field.RETRIED),
            totals.count(Field.DEAD),
            running,
            (settled - last_settled) / max(now - last_at, 1e-9),
        )
