"""Everything the supervisor watches besides its children's lives: backend health, alarms,
progress and the numbers its ``/metrics`` shows: this is the one place that reads every seat's
counters on every turn of the loop.

* Setup warnings (``ConsumerControl.check_server``) every ``check_every_s``.
* Alarms: serious backend events (a Redis that restarted empty lost jobs). Every child counts
  those it saw in ``Field.ALARMS``; the supervisor's own connection keeps its own
  (``ConsumerControl.alarms``). Each new one is logged at ERROR and kept for good in
  ``warnings``.
* A progress line now and then: totals (removed seats included), jobs running now and the
  recent rate.
* Metrics, when the supervisor serves them (``consumer.pool_metrics``): each turn publishes
  the worker processes desired and alive and the jobs running; ``restarted`` counts restarts.

The supervisor calls ``turn`` once per loop iteration; a failure to reach the backend is
logged, never fatal (the workers log and retry on their own).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consumer.pool_metrics import PoolMetrics, PoolNumbers
from consumer.seats import Roster
from services.errors import ConveyorError
from services.protocol import ConsumerControl
from services.stats import Field, total

log = logging.getLogger("conveyor.supervisor")

CHECK_EVERY_S = 30.0


class Monitor:
    """The supervisor's periodic checks over ``roster``; ``turn`` is cheap between them."""

    def __init__(
        self,
        queue: ConsumerControl,
        roster: Roster,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = CHECK_EVERY_S,
        metrics: PoolMetrics | None = None,
    ) -> None:
        self._queue = queue
        self._roster = roster
        self._metrics = metrics
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

    def turn(self) -> None:
        """Read the children's alarm counters and publish metrics; check the backend and
        report when due."""
        self._child_alarms()
        if self._metrics is not None:
            self._publish(self._metrics)
        if self._clock() >= self._next_check:
            self.check_backend()
            self._report()

    def restarted(self) -> None:
        """A seat's process ended and will be started again."""
        if self._metrics is not None:
            self._metrics.restarted()

    def check_backend(self) -> None:
        """Ask the backend for setup warnings and alarms (it logs what is wrong)."""
        self._next_check = self._clock() + self._check_every_s
        try:
            self._setup = self._queue.check_server()
            alarms = self._queue.alarms()
        except ConveyorError as exc:
            log.warning("cannot check the backend: %s", exc)
            return
        for text in alarms:
            self._alarm(text)

    def _publish(self, metrics: PoolMetrics) -> None:
        seats = list(self._roster)
        metrics.publish(
            PoolNumbers(
                desired=sum(1 for seat in seats if not seat.leaving),  # a shrink's leavers: no
                alive=sum(1 for seat in seats if seat.alive),
                running=self._roster.running(),
            )
        )

    def _child_alarms(self) -> None:
        for seat in self._roster:
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

    def _report(self) -> None:
        """A progress line for the logs of a long-running worker: totals and the recent rate."""
        totals = total(stats.block for stats in self._roster.stats())
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
            self._roster.running(),
            (settled - last_settled) / max(now - last_at, 1e-9),
        )
