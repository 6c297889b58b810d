"""The scheduler: puts each periodic job on its queue once per due time, fleet-wide.

Every ``conveyor worker`` whose registry has periodic entries runs one, as a thread of its
supervisor process (``scheduling``); they share the backend's ``ScheduleStore``::

    turn (run_once):  lead(id, lease)? --no--> wait a third of the lease, try again
                         | yes
                         v
                      last_fired(names) -> plan_firing per entry (services.periodic)
                         -> put cron:<name>:<due> on its queue (put-if-absent)
                         -> mark_fired(name, due)
                      wait until the next due time (at most a third of the lease)

Exactly once per due time: the lease keeps one leader at a time, and a leader that dies between
a put and its ``mark_fired`` (or two leaders, one of them paused past its lease) puts the same
deterministic id again, which the backend stores at most once. A due time is marked only after
its put, so none is lost to a crash. Time is this host's wall clock (``time.time``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from services.codec import encode_job
from services.errors import BackendUnavailableError, ConveyorError
from services.job import Job
from services.periodic import (
    PeriodicSpec,
    job_id_for,
    plan_firing,
    schedule_group,
    schedule_of,
)
from services.protocol import JobPutter, ScheduleStore

log = logging.getLogger("conveyor.scheduler")

GRACE_LEASES = 3
"""Due times up to this many leases old (at least ``periodic.GRACE_S``) fire late, not missed:
a failover takes about one lease."""


class SchedulingBackend(JobPutter, ScheduleStore, Protocol):
    """What the scheduler uses of a backend: puts, and the schedulers' store."""


def new_scheduler_id() -> str:
    """``hostname:pid:random``: ``conveyor cron list`` shows who leads."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def fire(putter: JobPutter, spec: PeriodicSpec, due: float) -> bool:
    """Put ``spec``'s job for due time ``due``; False if that due time's job was there."""
    job_id = job_id_for(spec.name, due)
    job = Job(spec.job, tuple(spec.args), dict(spec.kwargs), queue=spec.queue, id=job_id)
    return putter.put(spec.queue, job_id, encode_job(job))


class Scheduler:
    """One scheduler; ``run_once`` is a turn, ``run`` turns until ``stop``."""

    def __init__(
        self,
        backend: SchedulingBackend,
        specs: Sequence[PeriodicSpec],
        *,
        lease_s: float,
        scheduler_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._specs = list(specs)
        self.group = schedule_group(self._specs)
        """The lease this scheduler competes for: one per set of entries."""
        self._lease_s = lease_s
        self.id = scheduler_id or new_scheduler_id()
        self._clock = clock
        self._grace_s = max(60.0, GRACE_LEASES * lease_s)
        self._stop = threading.Event()
        self.leading = False
        self.fired = 0
        """Due times this scheduler put (not those it found there already)."""

    def run_once(self) -> float:
        """Lead or not; if leading, fire what is due. Seconds to wait before the next turn."""
        renew_s = self._lease_s / 3
        was_leading, self.leading = (
            self.leading,
            self._backend.lead(self.id, self._lease_s, group=self.group),
        )
        if self.leading != was_leading:
            log.info("scheduler %s %s", self.id, "leads" if self.leading else "no longer leads")
        if not self.leading:
            return renew_s
        now = self._clock()
        last = self._backend.last_fired([spec.name for spec in self._specs])
        for spec in self._specs:
            self._turn(spec, last.get(spec.name), now)
        upcoming = min(schedule_of(spec.schedule).next_after(now) for spec in self._specs)
        return max(0.0, min(renew_s, upcoming - self._clock()))

    def _turn(self, spec: PeriodicSpec, last: float | None, now: float) -> None:
        plan = plan_firing(spec, last=last, now=now, grace_s=self._grace_s)
        if plan.skipped is not None and spec.missed == "skip":
            log.warning("periodic %r: skipped due times missed in (%.0f, %.0f]", spec.name,
                        *plan.skipped)  # fmt: skip
        for due in plan.fire:
            try:
                stored = fire(self._backend, spec, due)
            except BackendUnavailableError:
                raise  # the turn fails; the next one starts again from what was marked
            except ConveyorError as exc:  # this entry cannot be put (its arguments, its queue)
                log.error("periodic %r: cannot fire %s: %s", spec.name, due, exc)
                stored = False
            self.fired += stored
            log.info("periodic %r: %s %s", spec.name, "fired" if stored else "was fired:",
                     job_id_for(spec.name, due))  # fmt: skip
            self._backend.mark_fired(spec.name, due)
        if plan.mark is not None and not plan.fire:
            self._backend.mark_fired(spec.name, plan.mark)

    def run(self) -> None:
        """Turn until ``stop``; a backend outage is logged and retried; resign at the end."""
        try:
            while not self._stop.is_set():
                try:
                    wait_s = self.run_once()
                except BackendUnavailableError as exc:
                    log.warning("scheduler: %s; retrying", exc)
                    self.leading, wait_s = False, min(1.0, self._lease_s / 3)
                except Exception:  # a bug must not end periodic jobs for the fleet silently
                    log.exception("scheduler turn failed; retrying")
                    wait_s = self._lease_s / 3
                self._stop.wait(wait_s + 0.001)  # past the due time, not just before it
        finally:
            self._resign()

    def stop(self) -> None:
        self._stop.set()

    def _resign(self) -> None:
        with contextlib.suppress(ConveyorError):
            # The next leader need not wait for the lease to lapse.
            self._backend.resign(self.id, group=self.group)


@contextlib.contextmanager
def scheduling(
    backend: SchedulingBackend,
    specs: Sequence[PeriodicSpec],
    *,
    enabled: bool | None,
    lease_s: float,
) -> Iterator[Scheduler | None]:
    """Run a scheduler thread for ``specs`` while the block runs (``enabled`` None: when there
    are any); it stops and resigns at the end."""
    if not specs or enabled is False:
        yield None
        return
    scheduler = Scheduler(backend, specs, lease_s=lease_s)
    thread = threading.Thread(target=scheduler.run, name="conveyor-scheduler", daemon=True)
    thread.start()
    log.info("scheduler %s started for %d periodic job(s)", scheduler.id, len(specs))
    try:
        yield scheduler
    finally:
        scheduler.stop()
        thread.join(timeout=10.0)
