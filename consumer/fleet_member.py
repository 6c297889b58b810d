"""A supervisor's membership in the fleet: its record, its share, its pauses, its signals.

The supervisor owns one ``FleetMember`` when it was given a ``FleetLink`` (``conveyor worker``
and ``conveyor run`` always give one) and calls it from its loop::

    start()          turn(now)   join before the first process starts: share and pauses known
    each run_once    turn(now)   Reconciler: beat, resize to the share, hand over the pauses
                                 AutoscaleLoop: the group's leader writes autoscale decisions
                                 LatencyPusher: the workers' enqueue-to-start histogram's
                                 growth into the backend's history (every few seconds)
    SIGTTIN/SIGTTOU  nudge(+-1)  the *group's* desired total moves by one (a resize of this
                                 supervisor alone would be undone by the next reconcile)
    stop begins      leave()     peers take over its share at once (last latency push)

What it reads of the supervisor is the small ``Pool`` surface, so this module does not import
the supervisor, and tests drive it with a fake.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

from consumer.autoscale_loop import AutoscaleLoop
from consumer.latency_push import LatencyPusher
from consumer.reconcile import Reconciler, ReconcileTiming
from consumer.supervisor_settings import SupervisorSettings
from services.errors import BackendUnavailableError, ConfigError
from services.protocol import FleetControl, QueueInspector, SupervisorRecord
from services.protocol.history import HistoryStore
from services.stats import Field, Stats, total

log = logging.getLogger("conveyor.fleet")


@dataclass(frozen=True)
class FleetLink:
    """What a supervisor needs to take part in a fleet, built by the command that starts it."""

    fleet: FleetControl
    backlog: QueueInspector | None = None
    """Where the group's leader reads the backlog to autoscale; None: this one never does."""
    timing: ReconcileTiming = field(default_factory=ReconcileTiming)
    autoscale_every_s: float = 1.0
    history: HistoryStore | None = None
    """Where the workers' enqueue-to-start latency goes for the dashboard; None: nowhere."""


class Pool(Protocol):
    """What a fleet member reads of its supervisor, and the one change it makes: its size."""

    @property
    def size(self) -> int: ...

    @property
    def stats(self) -> list[Stats]: ...

    def pids(self) -> list[int]: ...

    def running(self) -> int: ...

    def resize(self, size: int) -> None: ...

    def set_paused(self, queues: Collection[str]) -> None: ...


def conveyor_version() -> str:
    """The installed package's version ("" when it runs from a tree that is not installed)."""
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return ""


class FleetMember:
    """One supervisor's side of the fleet (see the module docstring)."""

    def __init__(self, link: FleetLink, pool: Pool, settings: SupervisorSettings) -> None:
        self._link = link
        self._pool = pool
        self._settings = settings
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{secrets.token_hex(3)}"
        """``host:pid:random``: unique across hosts and restarts, readable in status."""
        self._started_at = time.time()
        self._version = conveyor_version()
        self._left = False
        self._paused_here: list[str] = []
        self._reconciler = Reconciler(
            link.fleet, self.report, pool.resize, pauses=self._pauses, timing=link.timing
        )
        self._autoscale = None
        if link.backlog is not None:
            self._autoscale = AutoscaleLoop(
                link.fleet, link.backlog, me=self.id, group=settings.group,
                every_s=link.autoscale_every_s,
            )  # fmt: skip
        self._latency = None
        if link.history is not None:
            self._latency = LatencyPusher(link.history, self._blocks)

    def _blocks(self) -> list[object]:
        return [stats.block for stats in self._pool.stats]

    def report(self) -> SupervisorRecord:
        """This supervisor's record now (what it beats)."""
        pool, settings = self._pool, self._settings
        return SupervisorRecord(
            id=self.id,
            group=settings.group,
            max_processes=settings.process_cap,
            host=self.host,
            pid=os.getpid(),
            queues=settings.worker.queues,
            pool=settings.shape.kind.value,
            processes_desired=pool.size,
            processes_alive=len(pool.pids()),
            jobs_running=pool.running(),
            jobs_done=total(stats.block for stats in pool.stats).count(Field.DONE),
            started_at=self._started_at,
            conveyor_version=self._version,
        )

    def turn(self, now: float) -> None:
        """Beat and reconcile when due; autoscale the group when this one leads it."""
        if self._left:
            return
        self._reconciler.run_once(now)
        if self._reconciler.in_trouble:
            return
        if self._autoscale is not None:
            self._autoscale.run_once(now)
        if self._latency is not None:
            self._latency.run_once(now)

    def leave(self) -> None:
        """Leave the fleet once (a stop began): no more beats; peers re-split at once."""
        if not self._left:
            self._left = True
            if self._latency is not None:
                self._latency.push()
            self._reconciler.leave()

    def nudge(self, step: int, by: str) -> None:
        """Move the group's desired total by ``step`` (SIGTTIN: +1, SIGTTOU: -1), as ``by``."""
        group = self._settings.group
        try:
            wanted, before = self._nudged(step)
            if wanted == before:
                log.warning("fleet: %s ignored: group %s already wants 0 processes", by, group)
                return
            state = self._link.fleet.set_desired(
                group, wanted, set_by=f"{by}@{self.host}", reason=f"{by} to {self.id}"
            )
        except (BackendUnavailableError, ConfigError, ValueError) as exc:
            log.warning("fleet: %s ignored, the backend did not take it: %s", by, exc)
            return
        version = state.version if state else "?"
        log.info(
            "fleet: %s: group %s now wants %d worker process(es) (was %d; version %s)",
            by, group, wanted, before, version,
        )  # fmt: skip
        self._reconciler.poke()

    def _nudged(self, step: int) -> tuple[int, int]:
        """The group's total after ``step``, and before: its desired state's, or (none yet) what
        its live supervisors run now."""
        fleet, group = self._link.fleet, self._settings.group
        desired = fleet.desired(group)
        if desired is not None:
            before = desired.processes
            if desired.autoscale is not None:
                log.warning("fleet: group %s: autoscale off (a manual change)", group)
        else:
            peers = [r for r in fleet.supervisors() if r.group == group and not r.lost]
            before = self._pool.size + sum(r.processes_desired for r in peers if r.id != self.id)
        return max(0, before + step), before

    def _pauses(self, paused: frozenset[str]) -> None:
        mine = sorted(paused & set(self._settings.worker.queues))
        if mine != self._paused_here:
            resumed = sorted(set(self._paused_here) - set(mine))
            if mine:
                log.info("fleet: paused: %s (workers take nothing from them)", ", ".join(mine))
            if resumed:
                log.info("fleet: resumed: %s", ", ".join(resumed))
            self._paused_here = mine
        self._pool.set_paused(paused)
