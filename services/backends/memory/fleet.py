"""``FleetControl`` in the memory of one process (``memory://``): the fleet of a ``conveyor run``.

A ``conveyor run`` is one process tree, so the registry, the desired states and the pauses live
in the parent, behind one lock (the supervisor's loop and a control channel's thread may call at
once). Records are frozen dataclasses, stored as they come: nothing here crosses a process
boundary. ``clock`` (epoch seconds) stands in for the backend's clock, so tests can step it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.protocol.fleet import (
    LOST_KEEP_FACTOR,
    AutoscaleSettings,
    DesiredState,
    PauseState,
    SupervisorRecord,
    check_desired,
    is_lost,
)


@dataclass(frozen=True)
class _Beat:
    record: SupervisorRecord
    at: float
    ttl_s: float


class MemoryFleet:
    """A ``FleetControl`` for the supervisors of one process tree."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, _Beat] = {}
        self._desired: dict[str, DesiredState] = {}
        self._pauses: dict[str, PauseState] = {}
        self._revision = 0

    def beat(self, record: SupervisorRecord, ttl_s: float) -> None:
        """Register or refresh ``record``, live for ``ttl_s`` from now."""
        with self._lock:
            now = self._prune()
            old = self._beats.get(record.id)
            if old is None or is_lost(old.at, old.ttl_s, now):
                self._revision += 1  # joined, or came back: peers must re-split
            self._beats[record.id] = _Beat(record, now, ttl_s)

    def leave(self, supervisor_id: str) -> None:
        """Forget a supervisor now."""
        with self._lock:
            if self._beats.pop(supervisor_id, None) is not None:
                self._revision += 1

    def supervisors(self) -> list[SupervisorRecord]:
        """Live and lost supervisors, by id."""
        with self._lock:
            now = self._prune()
            return [
                dataclasses.replace(
                    beat.record, last_beat=beat.at, lost=is_lost(beat.at, beat.ttl_s, now)
                )
                for _, beat in sorted(self._beats.items())
            ]

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
        """Store the group's next desired state (compare-and-set with ``if_version``)."""
        check_desired(group, processes, autoscale)
        with self._lock:
            old = self._desired.get(group)
            version = old.version if old else 0
            if if_version is not None and if_version != version:
                return None
            state = DesiredState(
                group, processes, version + 1, set_by, self._clock(), autoscale, reason
            )
            self._desired[group] = state
            self._revision += 1
            return state

    def desired(self, group: str) -> DesiredState | None:
        """The group's desired state, if any."""
        with self._lock:
            return self._desired.get(group)

    def groups(self) -> list[str]:
        """Groups with a desired state or a listed supervisor."""
        listed = {record.group for record in self.supervisors()}
        with self._lock:
            return sorted(listed | set(self._desired))

    def pause(self, queue: str, *, set_by: str = "") -> bool:
        """Pause ``queue``; False if it was paused already."""
        with self._lock:
            if queue in self._pauses:
                return False
            self._pauses[queue] = PauseState(queue, set_by, self._clock())
            self._revision += 1
            return True

    def resume(self, queue: str) -> bool:
        """Resume ``queue``; False if it was not paused."""
        with self._lock:
            if self._pauses.pop(queue, None) is None:
                return False
            self._revision += 1
            return True

    def paused(self) -> set[str]:
        """Names of the paused queues."""
        with self._lock:
            return set(self._pauses)

    def pauses(self) -> list[PauseState]:
        """Paused queues, by name."""
        with self._lock:
            return [self._pauses[name] for name in sorted(self._pauses)]

    def revision(self) -> int:
        """Moves at every change of desired state, pause or membership."""
        with self._lock:
            return self._revision

    def close(self) -> None:
        """Nothing to release: the state lives as long as this object."""

    def _prune(self) -> float:
        # Drop supervisors lost for LOST_KEEP_FACTOR TTLs; the caller holds the lock.
        now = self._clock()
        for supervisor_id, beat in list(self._beats.items()):
            if is_lost(beat.at, LOST_KEEP_FACTOR * beat.ttl_s, now):
                del self._beats[supervisor_id]
        return now
