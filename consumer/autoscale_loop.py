"""The autoscaler of a group, run by its leader: read the load, decide, write the decision.

Every supervisor of a fleet carries one ``AutoscaleLoop``; each ``run_once(now)`` (about once a
second) it looks at its group's desired state. Only when that state has autoscale bounds, and
this supervisor is the *leader* (the first live supervisor of the group by id: every member
computes the same one from the same list, so exactly one acts, and another takes over as soon
as the leader is lost or leaves), it::

    reads the load: backlog = waiting jobs of the group's queues that are not paused,
                    running = the live records' jobs_running,
                    throughput = jobs settled per second (the queues' done + dead counters)
    -> consumer.autoscale.decide (pure) -> when the total changes: set_desired(...,
       autoscale=the same bounds, reason=the decision's, if_version=the version it read)

The compare-and-set means an operator's change (``conveyor scale g=N`` turns autoscale off)
always wins over a decision made from an older state; the loop then starts over from what it
reads. Every decision is logged with its reason: a change at INFO, a hold at DEBUG.
"""

from __future__ import annotations

import logging
from collections import deque

from consumer.autoscale import AutoscaleState, Decision, Load, decide
from services.errors import BackendUnavailableError, ConfigError
from services.protocol import DesiredState, FleetControl, QueueInspector, SupervisorRecord

log = logging.getLogger("conveyor.autoscale")

THROUGHPUT_WINDOW_S = 60.0
"""Throughput is measured over this much of the recent past."""


class AutoscaleLoop:
    """The autoscaler of ``group`` as supervisor ``me`` runs it (acting only while it leads)."""

    def __init__(
        self,
        fleet: FleetControl,
        backlog: QueueInspector,
        *,
        me: str,
        group: str,
        every_s: float = 1.0,
    ) -> None:
        self._fleet = fleet
        self._backlog = backlog
        self._me = me
        self._group = group
        self._every_s = every_s
        self._next = float("-inf")
        self._state: AutoscaleState | None = None
        self._version = 0
        """The desired state's version ``_state`` follows: another one means someone else wrote."""
        self._settled: deque[tuple[float, int]] = deque()
        """(time, done + dead over the group's queues) over the last ``THROUGHPUT_WINDOW_S``."""
        self._trouble = ""

    def run_once(self, now: float) -> Decision | None:
        """Decide (and write a change) if a turn is due and this supervisor leads an autoscaled
        group; the decision, else None."""
        if now < self._next:
            return None
        self._next = now + self._every_s
        try:
            decision = self._turn(now)
        except (BackendUnavailableError, ConfigError) as exc:
            if str(exc) != self._trouble:
                log.warning(
                    "autoscale %s: skipped, the backend did not answer: %s", self._group, exc
                )
            self._trouble = str(exc)
            return None
        self._trouble = ""
        return decision

    def _turn(self, now: float) -> Decision | None:
        desired = self._fleet.desired(self._group)
        members = self._members() if desired and desired.autoscale else []
        if desired is None or not members or members[0].id != self._me:
            self._state = None  # not ours to decide: a later lead starts a fresh window
            self._settled.clear()
            return None
        if self._state is None or desired.version != self._version:
            self._state = AutoscaleState.start(desired.processes, now)
            self._version = desired.version
        decision = self._decide(desired, members, now)
        self._state = decision.state
        if decision.changed:
            self._write(desired, decision)
        else:
            log.debug("autoscale %s: %s", self._group, decision.reason)
        return decision

    def _members(self) -> list[SupervisorRecord]:
        """The group's live supervisors, by id (the backend lists them so)."""
        return [r for r in self._fleet.supervisors() if r.group == self._group and not r.lost]

    def _decide(
        self, desired: DesiredState, members: list[SupervisorRecord], now: float
    ) -> Decision:
        assert desired.autoscale is not None and self._state is not None
        paused = self._fleet.paused()
        queues = sorted({q for r in members for q in r.queues})
        counts = [self._backlog.counts(q) for q in queues]
        backlog = sum(c.waiting for c, q in zip(counts, queues, strict=True) if q not in paused)
        load = Load(
            backlog=backlog,
            running=sum(r.jobs_running for r in members),
            throughput=self._throughput(now, sum(c.done + c.dead for c in counts)),
        )
        return decide(load, desired.autoscale, self._state, now=now)

    def _throughput(self, now: float, settled: int) -> float:
        self._settled.append((now, settled))
        while now - self._settled[0][0] > THROUGHPUT_WINDOW_S:
            self._settled.popleft()
        first_at, first = self._settled[0]
        span = now - first_at
        return max(0.0, (settled - first) / span) if span > 0 else 0.0

    def _write(self, desired: DesiredState, decision: Decision) -> None:
        log.info("autoscale %s: %s", self._group, decision.reason)
        written = self._fleet.set_desired(
            self._group,
            decision.desired,
            set_by=f"autoscale@{self._me}",
            autoscale=desired.autoscale,
            reason=decision.reason,
            if_version=desired.version,
        )
        if written is None:
            log.info("autoscale %s: the group changed meanwhile; deciding again", self._group)
            self._state = None
        else:
            self._version = written.version
