"""The supervisor's two-stage stop as a small state machine: which step is due, and when.

::

    running --stop--> draining (SIGTERM; hard stop at the deadline)
            --stop again, stop_now, or the deadline--> hard (SIGQUIT; kill after a grace)
            --grace over--> kill what is left (once)

It decides only; the supervisor signals, logs and reaps. Times come from the caller's clock.
"""

from __future__ import annotations

from enum import Enum


class Step(Enum):
    """What the supervisor must do now."""

    DRAIN = "drain"
    """Ask every child to finish its running jobs (SIGTERM)."""
    HARD = "hard"
    """Ask every child to hand back its jobs at once (SIGQUIT)."""
    KILL = "kill"
    """Kill the children still alive."""


class Shutdown:
    """Where the stop stands; ``drain_s`` is the drain's deadline, ``grace_s`` the hard one's."""

    def __init__(self, *, drain_s: float, grace_s: float) -> None:
        self._drain_s = drain_s
        self._grace_s = grace_s
        self.stopping = False
        self.hard = False
        self._hard_at: float | None = None
        self._kill_at: float | None = None

    def request(self, now: float) -> Step | None:
        """A stop request (a signal): drain the first time, stop hard the second."""
        if not self.stopping:
            self.stopping = True
            self._hard_at = now + self._drain_s
            return Step.DRAIN
        return self.hard_now(now)

    def hard_now(self, now: float) -> Step | None:
        """The hard stop, unless it already happened."""
        self.stopping = True
        if self.hard:
            return None
        self.hard = True
        self._hard_at = None
        self._kill_at = now + self._grace_s
        return Step.HARD

    def due(self, now: float) -> Step | None:
        """The step a deadline calls for now, if any (each deadline fires once)."""
        if self._hard_at is not None and now >= self._hard_at:
            return self.hard_now(now)
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            return Step.KILL
        return None

    def timers(self) -> list[float]:
        """When ``due`` may next have something to say."""
        return [t for t in (self._hard_at, self._kill_at) if t is not None]
