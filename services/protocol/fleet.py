"""``FleetControl``: the fleet's shared state in the backend; who runs, how many should, what waits.

Every consumer supervisor *beats* a ``SupervisorRecord`` into the backend (id, host, group,
queues, processes wanted and alive, jobs); an operator sets a group's ``DesiredState`` (how many
worker processes across the fleet, by whom, when; ``conveyor scale``) and pauses queues
(``conveyor pause``). Supervisors *reconcile* towards the desired state level-triggered: each
turn reads it and the live peers of its group and takes its share (``consumer.fleet_split``);
``revision`` only tells them to look now rather than at the next periodic turn::

    conveyor scale g=6 --set_desired--> [desired: g -> 6, version 4] <--desired-- Supervisor A
    conveyor pause q   --pause-------->  [paused: q]                  <--paused--- Supervisor B
    Supervisor A, B    --beat---------->  [supervisors: A, B, ...]    --supervisors--> status

Contract of this role (every backend, proven by ``services.testing.contract.test_fleet``):

* **Persistent.** Records, desired states and pauses live in the backend, not in a supervisor:
  a supervisor that restarts finds them (the memory backend keeps them in the process that
  made it, which a ``conveyor run`` is).
* **Atomic, versioned.** ``set_desired`` increments the group's ``version`` in the same step as
  it stores the state, so two writers never both get the same version; ``if_version`` makes it a
  compare-and-set (an autoscaler does not overwrite an operator who turned it off).
* **Lost, then gone.** A supervisor whose last beat is older than the ``ttl_s`` it beat with is
  listed ``lost`` (its jobs are recovered by the lease machinery, not by this role); after
  ``LOST_KEEP_FACTOR`` TTLs it is no longer listed. ``leave`` removes it at once.
* **Revision.** ``revision()`` changes whenever a desired state, a pause, or the membership
  (a supervisor joins, comes back from lost, or leaves) changes; it is one cheap read.
* **Backend time.** Beats and ``set_at`` are stamped by the backend's clock (Redis ``TIME``),
  so the hosts' clocks do not decide who is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

LOST_KEEP_FACTOR = 10
"""A supervisor that stopped beating stays listed (as lost) for this many of its TTLs."""


@dataclass(frozen=True)
class SupervisorRecord:
    """What one supervisor tells the fleet about itself at each beat.

    ``last_beat`` and ``lost`` are filled in by the backend when it lists supervisors (the
    values ``beat`` is given are ignored).
    """

    id: str
    group: str
    max_processes: int
    """The most worker processes this supervisor runs (``--max-processes``), whatever its share."""
    host: str = ""
    pid: int = 0
    queues: tuple[str, ...] = ()
    pool: str = "processes"
    """The pool kind (``consumer.pool_shape.PoolKind``: processes, threads, asyncio)."""
    processes_desired: int = 0
    processes_alive: int = 0
    jobs_running: int = 0
    jobs_done: int = 0
    started_at: float = 0.0
    """Wall-clock time (epoch seconds) the supervisor started, by its host's clock."""
    conveyor_version: str = ""
    last_beat: float = 0.0
    """Epoch seconds of its last beat, by the backend's clock."""
    lost: bool = False
    """It stopped beating: its last beat is older than the TTL it beat with."""


@dataclass(frozen=True)
class AutoscaleSettings:
    """Bounds of an autoscaled group (``conveyor scale GROUP --auto``): totals across the fleet.

    Desired processes = ceil(backlog / ``backlog_per_worker``) within [``minimum``, ``maximum``]
    (KEDA's ``listLength``); growth at once, shrinking after ``stabilization_s`` and only by more
    than ``tolerance`` (a fraction of the current size). See ``consumer.autoscale``.
    """

    minimum: int
    maximum: int
    backlog_per_worker: int
    stabilization_s: float = 60.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum or self.maximum < 1:
            raise ValueError(
                f"autoscale bounds must satisfy 0 <= min <= max and max >= 1, "
                f"not min {self.minimum}, max {self.maximum}"
            )
        if self.backlog_per_worker < 1:
            raise ValueError(
                f"backlog per worker must be at least 1, not {self.backlog_per_worker}"
            )
        if self.stabilization_s < 0 or not 0 <= self.tolerance < 1:
            raise ValueError("stabilization must be >= 0 s and tolerance within [0, 1)")


@dataclass(frozen=True)
class DesiredState:
    """How many worker processes a group should run across the fleet, and who said so."""

    group: str
    processes: int
    version: int
    """1 for the group's first state, +1 at every change (atomic in the backend)."""
    set_by: str
    set_at: float
    """Epoch seconds, by the backend's clock."""
    autoscale: AutoscaleSettings | None = None
    """Set when the autoscaler owns ``processes``; None when an operator set it by hand."""
    reason: str = ""
    """Why this number (the autoscaler's decision, or empty)."""


@dataclass(frozen=True)
class PauseState:
    """A paused queue: consumers take nothing from it; producers still put."""

    queue: str
    set_by: str
    set_at: float
    """Epoch seconds, by the backend's clock."""


def check_desired(group: str, processes: int, autoscale: AutoscaleSettings | None) -> None:
    """ValueError unless ``set_desired`` may store these (every backend calls this first)."""
    if not group:
        raise ValueError("a group needs a name")
    if processes < 0:
        raise ValueError(f"cannot want {processes} worker processes")
    if autoscale and not autoscale.minimum <= processes <= autoscale.maximum:
        raise ValueError(
            f"{processes} process(es) is outside the autoscale bounds "
            f"[{autoscale.minimum}, {autoscale.maximum}]"
        )


def is_lost(last_beat: float, ttl_s: float, now: float) -> bool:
    """True when a beat at ``last_beat`` with ``ttl_s`` is too old at ``now``."""
    return now - last_beat > ttl_s


@runtime_checkable
class FleetControl(Protocol):
    """The fleet registry, each group's desired size, and paused queues, kept in the backend."""

    def beat(self, record: SupervisorRecord, ttl_s: float) -> None:
        """Register ``record`` (or refresh it): it counts as live for ``ttl_s`` from now."""

    def leave(self, supervisor_id: str) -> None:
        """Forget a supervisor at once (it stopped cleanly); unknown ids are ignored."""

    def supervisors(self) -> list[SupervisorRecord]:
        """Every supervisor listed now, by id: live, and lost (``lost``) but not dropped yet."""

    def set_desired(
        self,
        group: str,
        processes: int,
        *,
        set_by: str,
        autoscale: AutoscaleSettings | None = None,
        reason: str = "",
        if_version: int | None = None,
    ) -> DesiredState | None:
        """Store the group's desired state with the next version; returns it.

        ``if_version``: store only if the group's version is this one now (0: the group has no
        state yet); otherwise nothing changes and None is returned. ValueError for a negative
        count, or one outside the ``autoscale`` bounds.
        """

    def desired(self, group: str) -> DesiredState | None:
        """The group's desired state; None if nobody ever set one."""

    def groups(self) -> list[str]:
        """Every group with a desired state or a listed supervisor, sorted."""

    def pause(self, queue: str, *, set_by: str = "") -> bool:
        """Pause ``queue``; False if it was paused already (then nothing changes)."""

    def resume(self, queue: str) -> bool:
        """Resume ``queue``; False if it was not paused."""

    def paused(self) -> set[str]:
        """The names of the paused queues (cheap: consumers read it every turn)."""

    def pauses(self) -> list[PauseState]:
        """The paused queues with who paused them and when, by queue name."""

    def revision(self) -> int:
        """A counter that moves at every change of a desired state, a pause or the membership."""
