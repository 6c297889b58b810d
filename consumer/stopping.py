"""Stops carried out on the supervisor's seats: the whole pool's, and each seat's a shrink sends
away, with their deadlines. Which step is due when is ``consumer.shutdown``'s decision.

::

    stop()          every seat STOPPING, then SIGTERM: drain within the shutdown timeout
    stop() again,   SIGQUIT: hand back every unfinished job at once; a grace later, SIGKILL
    stop_now() or
    the deadline
    send_away(seat) the same two stages for one seat, on a clock of its own

STOPPING is written before any signal: a child checks it before it starts a job, so no job
starts once the stop was received.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from consumer.seats import Roster, Seat
from consumer.shutdown import Shutdown, Step
from services.stats import Field

log = logging.getLogger("conveyor.supervisor")

HARD_GRACE_S = 1.5
"""How long a child gets to hand back its jobs after the hard stop before it is killed."""


class Stopper:
    """Carries out the stops of ``roster``'s seats; ``drain_s`` is the shutdown timeout."""

    def __init__(self, roster: Roster, *, drain_s: float, clock: Callable[[], float]) -> None:
        self._roster = roster
        self._drain_s = drain_s
        self._clock = clock
        self._pool = self._new_shutdown()

    @property
    def stopping(self) -> bool:
        """The whole pool was asked to stop."""
        return self._pool.stopping

    def stop(self) -> None:
        """First call: drain within the shutdown timeout. Second call: stop hard now."""
        self._stop_pool(self._pool.request(self._clock()))

    def stop_now(self) -> None:
        """The hard stop at once (SIGQUIT): children hand back every unfinished job."""
        self._stop_pool(self._pool.hard_now(self._clock()))

    def send_away(self, seat: Seat) -> None:
        """Drain ``seat``'s process like a stopping child's, then stop it hard at the deadline."""
        seat.departure = self._new_shutdown()
        _act(seat.departure.request(self._clock()), [seat])

    def enforce_deadlines(self) -> None:
        """Take the steps whose deadlines have passed."""
        now = self._clock()
        step = self._pool.due(now)
        if step is Step.HARD:
            log.warning("shutdown deadline passed")
        if step is not None:
            self._stop_pool(step)
        for seat in self._roster:
            if seat.departure is not None and seat.alive:
                _act(seat.departure.due(now), [seat])

    def timers(self) -> list[float]:
        """When ``enforce_deadlines`` may next have something to do."""
        timers = self._pool.timers()
        for seat in self._roster:
            timers += seat.departure.timers() if seat.departure is not None else []
        return timers

    def _new_shutdown(self) -> Shutdown:
        return Shutdown(drain_s=self._drain_s, grace_s=HARD_GRACE_S)

    def _stop_pool(self, step: Step | None) -> None:
        if step is Step.DRAIN:
            running = self._roster.running()
            log.info("draining: %d job(s) running, deadline %g s", running, self._drain_s)
        elif step is Step.HARD:
            log.info("stopping now: unfinished jobs go back to the queue")
        _act(step, self._roster)


def _act(step: Step | None, seats: Iterable[Seat]) -> None:
    for seat in seats:
        if step in (Step.DRAIN, Step.HARD):
            seat.stats.set(Field.STOPPING, 1)
        seat.act(step)
