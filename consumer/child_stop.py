"""When and how a worker process stops: the one owner of the child's stop policy.

One step, ``ChildStop.run_once(now)``, with the time passed in so tests step it::

    supervisor gone                      -> orphaned: hand back (durable queue), exit ERROR
    the signals recorded since the last step, and the drain deadline:
        SIGQUIT                          -> stop hard
        SIGTERM while running            -> drain
        drain deadline passed            -> stop hard
    while running, a reason to leave:
        a recycling limit (a job timed out, --max-jobs-per-child, --max-memory-per-child)
        --burst and the queues are empty -> drain
    -> turn the worker once; once it stopped: send what it still owes, exit RECYCLE or OK

*Drain*: fetch nothing more, hand back what has not started, let running jobs finish, for at
most ``WorkerSettings.shutdown_timeout_s`` (the parent's ``--shutdown-timeout``). *Stop hard*:
hand back every unfinished job at once. Every SIGTERM only drains: a SIGTERM sent to the whole
process group reaches a child twice (directly, then through the supervisor); the supervisor
answers a real second stop request with SIGQUIT.

The supervisor enforces its own deadline on its children (``consumer.shutdown``). The child's
drain deadline is for the drains the supervisor does not drive: a recycle, or a SIGTERM sent to
this process alone.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from collections.abc import Callable, Collection
from enum import Enum
from typing import Protocol

from consumer.worker import State
from services import exitcodes
from services.errors import ConfigError
from services.settings import WorkerSettings

log = logging.getLogger("conveyor.child")


class Move(Enum):
    """What the signals and the deadline call for."""

    KEEP = "keep"
    """Go on as before (running, or draining)."""
    DRAIN = "drain"
    STOP_HARD = "stop hard"


def decide(*, received: Collection[int], running: bool, past_deadline: bool) -> Move:
    """The move for the signals ``received`` since the last step (pure)."""
    if signal.SIGQUIT in received:
        return Move.STOP_HARD
    if received and running:  # any other signal drains, once
        return Move.DRAIN
    if past_deadline:
        return Move.STOP_HARD
    return Move.KEEP


class StoppableWorker(Protocol):
    """The part of ``Worker`` the stop policy reads and drives."""

    @property
    def state(self) -> State: ...

    @property
    def idle(self) -> bool: ...

    @property
    def recycle_reason(self) -> str | None: ...

    @property
    def jobs_settled(self) -> int: ...

    @property
    def held(self) -> int: ...

    def run_once(self) -> None: ...

    def drain(self) -> None: ...

    def stop_now(self) -> int: ...

    def flush(self, timeout_s: float) -> bool: ...


class SignalSource(Protocol):
    """Where the signal handlers recorded what arrived (``consumer.signals.SignalLog``)."""

    def take(self) -> list[int]: ...


class ChildStop:
    """Turns one worker until it must stop, and says with which exit code (module docstring).

    ``supervisor_alive`` is asked every step; ``durable`` says whether the queue survives the
    supervisor (False for ``memory://``, which lives in it); ``memory_mb`` reads this
    process's resident memory for ``--max-memory-per-child``.
    """

    def __init__(
        self,
        worker: StoppableWorker,
        signals: SignalSource,
        settings: WorkerSettings,
        *,
        supervisor_alive: Callable[[], bool],
        durable: bool,
        memory_mb: Callable[[], float] | None = None,
    ) -> None:
        self._worker = worker
        self._signals = signals
        self._settings = settings
        self._supervisor_alive = supervisor_alive
        self._durable = durable
        self._memory_mb = memory_mb or resident_memory_mb
        self._deadline: float | None = None
        """When the drain under way must end (stop hard); None while running."""

    def run_once(self, now: float) -> int | None:
        """One step (module docstring); None while the child goes on, else its exit code.

        A configuration error met while running (the backend now refuses our credentials or
        ACL) ends the child with CONFIG_FAILURE: restarting it would only be refused again.
        Its jobs stay leased in the backend and go to another consumer once the lease expires.
        """
        try:
            return self._step(now)
        except ConfigError as exc:
            log.error("configuration error, stopping: %s", exc)
            return exitcodes.CONFIG_FAILURE

    def _step(self, now: float) -> int | None:
        if not self._supervisor_alive():
            return self._orphaned()
        running = self._worker.state is State.RUNNING
        past = self._deadline is not None and now > self._deadline
        move = decide(received=self._signals.take(), running=running, past_deadline=past)
        if move is Move.STOP_HARD:
            self._stop_hard()
        else:
            if move is Move.DRAIN:
                self._drain(now)
            elif running:
                self._leave_if_due(now)
            self._worker.run_once()
        return self._finish() if self._worker.state is State.STOPPED else None

    def _leave_if_due(self, now: float) -> None:
        """Drain for a recycling limit, or a burst worker that found the queues empty."""
        recycle = self._recycle_reason()
        if recycle is not None:
            log.info("recycling: %s", recycle)
            self._drain(now)
        elif self._settings.burst and self._worker.idle:
            log.info("queues are empty; burst worker exits")
            self._drain(now)

    def _drain(self, now: float) -> None:
        self._worker.drain()
        self._deadline = now + self._settings.shutdown_timeout_s

    def _stop_hard(self) -> None:
        self._worker.stop_now()

    def _finish(self) -> int:
        self._worker.flush(self._settings.shutdown_timeout_s)
        return exitcodes.RECYCLE if self._recycle_reason() is not None else exitcodes.OK

    def _orphaned(self) -> int:
        """The supervisor is gone: hand back this worker's jobs, or say plainly they are lost."""
        if self._durable:
            log.warning(
                "supervisor is gone; handing back my %d job(s) and exiting", self._worker.held
            )
            self._stop_hard()
            return exitcodes.ERROR
        # The queue lived in the parent: nothing to hand back to, and nothing queued survived it.
        log.error(
            "the memory queue died with its parent: every job still queued there is lost; "
            "this worker held %d (lost too); exiting",
            self._worker.held,
        )
        return exitcodes.ERROR

    def _recycle_reason(self) -> str | None:
        worker, settings = self._worker, self._settings
        if worker.recycle_reason is not None:
            return worker.recycle_reason
        if settings.max_jobs is not None and worker.jobs_settled >= settings.max_jobs:
            return f"ran {worker.jobs_settled} jobs (--max-jobs-per-child {settings.max_jobs})"
        # Between jobs only: a process that starts above the limit must still make progress.
        if settings.max_memory_mb is not None and worker.jobs_settled > 0:
            rss_mb = self._memory_mb()
            if rss_mb > settings.max_memory_mb:
                return f"uses {rss_mb:.0f} MB (--max-memory-per-child {settings.max_memory_mb:g})"
        return None


def resident_memory_mb() -> float:
    """This process's resident set size now (Linux /proc; elsewhere the peak from rusage)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
