"""One supervisor's side of the fleet: beat its record, run its share of the group's total.

The supervisor calls ``run_once(now)`` every turn of its loop; the reconciler decides whether
this turn does anything (at most one turn per ``interval_s``, at once after ``poke``)::

    turn:  beat the record (every beat_s) -> read the fleet's revision
           -> if it moved, or resync_s passed, or poked: read the group's desired state and
              its live peers -> split (consumer.fleet_split) -> resize(share) if it differs
           -> hand the paused queues to ``pauses`` when they changed

Level-triggered: the periodic full turn (``resync_s``) is the source of truth, so a missed
change (a peer that went silent, a lost reply) is corrected at the next one; the revision (and
``poke``, for a local notification) only makes it happen sooner. With no desired state for the
group, the supervisor keeps the size it has. When the backend cannot be reached the
supervisor keeps its size too, says so once per outage, and tries again after a growing pause
(``interval_s`` doubled per failed turn, up to ``OUTAGE_CAP_S``): a backend that hangs blocks
each call for the client's timeout, and the supervisor's loop has children to look after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from consumer.fleet_split import split
from services.errors import BackendUnavailableError, ConfigError
from services.protocol.fleet import FleetControl, SupervisorRecord

log = logging.getLogger("conveyor.fleet")

OUTAGE_CAP_S = 10.0
"""Longest pause between two turns while the backend does not answer."""


@dataclass(frozen=True)
class ReconcileTiming:
    """How often the reconciler acts (seconds of the supervisor's clock)."""

    interval_s: float = 0.5
    """Least time between two turns (a poke skips it)."""
    beat_s: float = 1.0
    ttl_s: float = 10.0
    """Peers count this supervisor lost when it has not beaten for this long."""
    resync_s: float = 5.0
    """A full turn at least this often, even if the revision did not move."""


@dataclass(frozen=True)
class Turn:
    """What a full turn found (``run_once`` returns None for a turn that did not reconcile)."""

    share: int | None
    """This supervisor's share; None when the group has no desired state."""
    resized: bool
    note: str


class Reconciler:
    """Keeps one supervisor registered and at its share of its group's desired total.

    ``report()`` is the supervisor's record now (its ``processes_desired`` is its current size);
    ``resize(n)`` changes its size (n may be 0: a supervisor with no share runs no worker);
    ``pauses(names)``, if given, receives the paused queues whenever they change.
    """

    def __init__(
        self,
        fleet: FleetControl,
        report: Callable[[], SupervisorRecord],
        resize: Callable[[int], None],
        *,
        pauses: Callable[[frozenset[str]], None] | None = None,
        timing: ReconcileTiming | None = None,
    ) -> None:
        self._fleet = fleet
        self._report = report
        self._resize = resize
        self._pauses = pauses
        self._timing = timing or ReconcileTiming()
        self._next_turn = self._next_beat = self._next_resync = float("-inf")
        self._revision: int | None = None
        self._paused: frozenset[str] | None = None
        self._trouble = ""
        """The last error reaching the backend ("" once it answers again): logged once."""
        self._failures = 0
        self._capped_version = 0
        """The desired state whose total was last said to be out of reach."""

    @property
    def in_trouble(self) -> bool:
        """The last turn could not reach the backend."""
        return bool(self._trouble)

    def poke(self) -> None:
        """Something changed (a local notification): reconcile fully at the next ``run_once``."""
        self._next_turn = self._next_resync = float("-inf")

    def run_once(self, now: float) -> Turn | None:
        """One turn if one is due at ``now``: beat, then reconcile if anything may have moved."""
        if now < self._next_turn:
            return None
        self._next_turn = now + self._timing.interval_s
        try:
            turn = self._turn(now)
        except (BackendUnavailableError, ConfigError) as exc:
            self._complain(str(exc))
            self._failures += 1
            pause = self._timing.interval_s * 2 ** min(self._failures, 16)
            self._next_turn = now + min(pause, max(OUTAGE_CAP_S, self._timing.interval_s))
            return None
        if self._trouble:
            log.info("fleet: the backend answers again")
            self._trouble = ""
        self._failures = 0
        return turn

    def leave(self) -> None:
        """Leave the fleet (a clean stop): peers take over the share at once."""
        try:
            self._fleet.leave(self._report().id)
        except (BackendUnavailableError, ConfigError) as exc:
            log.warning("fleet: could not leave (peers will see this supervisor lost): %s", exc)

    def _turn(self, now: float) -> Turn | None:
        me = self._report()
        if now >= self._next_beat:
            self._fleet.beat(me, self._timing.ttl_s)
            self._next_beat = now + self._timing.beat_s
        revision = self._fleet.revision()
        if revision == self._revision and now < self._next_resync:
            return None
        turn = self._reconcile(me)
        self._revision, self._next_resync = revision, now + self._timing.resync_s
        return turn

    def _reconcile(self, me: SupervisorRecord) -> Turn:
        self._hand_pauses()
        desired = self._fleet.desired(me.group)
        if desired is None:
            return Turn(None, resized=False, note=f"group {me.group} has no desired size")
        peers = {r.id: r.max_processes for r in self._fleet.supervisors() if _peer(r, me)}
        shares = split(desired.processes, {**peers, me.id: me.max_processes})
        share = shares.shares[me.id]
        note = (
            f"group {me.group} wants {desired.processes} (version {desired.version}) across "
            f"{len(shares.shares)} supervisor(s): this one runs {share}"
        )
        if shares.capped:
            note += f"; group {shares.note}"
            if desired.version != self._capped_version:  # once per state: it may last
                log.warning("fleet: %s", note)
                self._capped_version = desired.version
        if share == me.processes_desired:
            return Turn(share, resized=False, note=note)
        log.info("fleet: %s (was %d)", note, me.processes_desired)
        self._resize(share)
        return Turn(share, resized=True, note=note)

    def _hand_pauses(self) -> None:
        if self._pauses is None:
            return
        paused = frozenset(self._fleet.paused())
        if paused != self._paused:
            self._pauses(paused)
            self._paused = paused

    def _complain(self, trouble: str) -> None:
        if trouble != self._trouble:
            log.warning("fleet: keeping the current size, the backend did not answer: %s", trouble)
        self._trouble = trouble


def _peer(record: SupervisorRecord, me: SupervisorRecord) -> bool:
    """A live supervisor of ``me``'s group (``me`` itself is added whatever its record says)."""
    return record.group == me.group and not record.lost and record.id != me.id
