"""``ScheduleStore``: the schedulers' role. One leader at a time, and the due times fired.

Every consumer process tree may run a scheduler (``consumer.scheduler``); they agree through
this role on who fires periodic jobs and on what was fired already:

* **Leadership is a lease.** ``lead`` takes the lease if it is free or lapsed, or renews it if
  the caller holds it; anyone else is told no. A leader that dies silently is replaced once
  its lease lapses (Redis: ``PX`` in Redis time; memory: the backend process's monotonic clock).
  The lease only keeps the schedulers from all working at once: it does not make firing
  exactly-once by itself (a paused leader may wake up after its lease). That comes from the
  deterministic job id of each due time and put-if-absent (``JobPutter``).
* **The fired due times only move forward.** ``mark_fired`` keeps the larger of the stored and
  the given time, so a stale leader cannot move an entry back and make it fire again; it
  outlives every scheduler (Redis: a hash without TTL), so a restart fires nothing old.

Proven on every backend by ``services.testing.contract.test_scheduling``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class ScheduleStore(Protocol):
    """Leadership among schedulers, and the newest due time fired per periodic entry."""

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        """Take the schedulers' lease for ``ttl_s`` from now if it is free, lapsed or already
        ``scheduler_id``'s (then it is renewed); True if ``scheduler_id`` leads now.

        ``group`` names the set of periodic entries the scheduler fires
        (``periodic.schedule_group``): each set has a lease of its own, so workers loading
        different entries each get a leader (an entry in two sets still fires once: ids)."""

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        """Give the lease of ``group`` up if ``scheduler_id`` holds it (anyone else's stays)."""

    def leader(self, *, group: str = "") -> str | None:
        """Who holds the lease of ``group`` now, if anyone."""

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        """The newest due time (epoch seconds) fired of each of ``names`` that has one."""

    def mark_fired(self, name: str, due: float) -> None:
        """Remember ``due`` as fired for ``name`` unless a later due time is remembered."""
