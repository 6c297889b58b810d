"""The supervisor: starts worker processes, reaps them, restarts them, stops them on time.

A small loop, stepped by ``run_once``::

    wait for a child to die (or the timeout) -> reap: say how it died, hand its jobs back
    -> restart due slots (capped exponential backoff) -> kill hung children -> enforce deadline

A child that cannot even start (exit code BOOT_FAILURE: bad ``--jobs``, bad configuration)
stops the supervisor with that exit code instead of a restart storm. Stopping is two-stage:
``stop()`` asks children to drain (SIGTERM) within ``shutdown_timeout_s``; a second ``stop()``
or the deadline asks again (children then hand back every unfinished job at once), and a child
still alive after a short grace is killed and its jobs released by the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from consumer.backoff import backoff_s
from consumer.board import RunningBoard, new_board
from consumer.child import ChildSpec, child_main
from consumer.pools import PoolShape
from consumer.signals import describe_exit, interrupts_ignored
from services import exitcodes
from services.errors import ConveyorError
from services.jobqueue import JobQueue
from services.settings import WorkerSettings
from services.stats import Field, Stats, new_block, total

log = logging.getLogger("conveyor.supervisor")

_HARD_GRACE_S = 1.5
"""How long a child gets to hand back its jobs after the hard stop before it is killed."""
_CHECK_EVERY_S = 30.0
_STABLE_S = 10.0
"""A child that lived this long resets its slot's restart backoff."""


@dataclass(frozen=True)
class SupervisorSettings:
    """What the supervisor runs and how it treats its children."""

    jobs: str
    shape: PoolShape
    worker: WorkerSettings
    start_method: str = "spawn"
    restart_base_s: float = 0.5
    restart_cap_s: float = 30.0
    hang_timeout_s: float = 60.0
    """A child whose loop has not turned for this long (a job holding the GIL in C) is killed."""
    log_level: int = logging.INFO


@dataclass
class _Slot:
    index: int
    stats: Stats
    board: Any = None
    process: BaseProcess | None = None
    consumer_id: str = ""
    generation: int = 0
    started_at: float = 0.0
    failures: int = 0
    start_after: float = 0.0
    retired: bool = False


class Supervisor:
    """Keeps ``shape.processes`` worker processes alive on ``queue``'s backend."""

    def __init__(
        self,
        queue: JobQueue,
        settings: SupervisorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._ctx: Any = multiprocessing.get_context(settings.start_method)
        self._slots = [_Slot(i, Stats(new_block())) for i in range(settings.shape.processes)]
        self._stopping = False
        self._hard_at: float | None = None
        self._kill_at: float | None = None
        self._hard_stopped = False
        self._next_check = 0.0
        self._last_report = (0, 0.0)
        self.warnings: list[str] = []
        """The backend's setup warnings from the last check."""
        self.exit_code: int | None = None
        """Set when the supervisor has finished: every child is gone."""

    @property
    def stats(self) -> list[Stats]:
        """Every slot's counters, for progress and summaries."""
        return [slot.stats for slot in self._slots]

    def pids(self) -> list[int]:
        """Process ids of the children alive now, by slot."""
        return [
            s.process.pid for s in self._slots if s.process and s.process.pid and self._alive(s)
        ]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        """Check the backend's setup (it logs what is wrong), then start every child."""
        self._check_backend()
        self._last_report = (0, self._clock())
        for slot in self._slots:
            self._spawn(slot)

    def run_once(self, timeout_s: float = 0.5, *, wake_fds: tuple[int, ...] = ()) -> None:
        """Wait up to ``timeout_s`` for a child to exit (or a wake fd), then act on it."""
        sentinels = [s.process.sentinel for s in self._slots if s.process and self._alive(s)]
        wait([*sentinels, *wake_fds], timeout=max(0.0, min(timeout_s, self._next_timer())))
        self._reap()
        if self.exit_code is not None:
            return
        self._restart_due()
        self._kill_hung()
        if self._clock() >= self._next_check:
            self._check_backend()
            self._report()
        self._enforce_deadlines()
        # Done only once every child has been reaped, so each one's jobs were handed back.
        if self._stopping and all(slot.process is None for slot in self._slots):
            self.exit_code = exitcodes.OK

    def stop(self) -> None:
        """First call: drain within the shutdown timeout. Second call: stop hard now."""
        now = self._clock()
        if not self._stopping:
            self._stopping = True
            timeout = self._settings.worker.shutdown_timeout_s
            running = sum(s.stats.get(Field.RUNNING) for s in self._slots)
            log.info("draining %d job(s) (deadline %g s)", running, timeout)
            self._hard_at = now + timeout
            self._signal_all(signal.SIGTERM)
        elif not self._hard_stopped:
            self._stop_hard(now)

    def _stop_hard(self, now: float) -> None:
        log.info("stopping now: unfinished jobs go back to the queue")
        self._hard_stopped = True
        self._hard_at = None
        self._kill_at = now + _HARD_GRACE_S
        # SIGQUIT, not a second SIGTERM: two SIGTERMs close together can merge into one.
        self._signal_all(signal.SIGQUIT)

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{slot.index}.{slot.generation}"
        slot.board = new_board(self._settings.shape.slots)
        spec = ChildSpec(
            name=f"worker-{slot.index}",
            connector=self._queue.connector(slot.consumer_id),
            jobs=self._settings.jobs,
            shape=self._settings.shape,
            settings=self._settings.worker,
            stats_block=slot.stats.block,
            board_block=slot.board,
            parent_pid=os.getpid(),
            log_level=self._settings.log_level,
        )
        process = self._ctx.Process(target=child_main, args=(spec,), name=spec.name)
        with interrupts_ignored():
            process.start()
        slot.process = process
        slot.started_at = self._clock()
        slot.stats.set(Field.HEARTBEAT, time.monotonic())
        log.debug("started worker-%d (pid %s)", slot.index, process.pid)

    def _reap(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            process.join()
            slot.process = None
            self._after_exit(slot, process)
            if self.exit_code is not None:
                return

    def _after_exit(self, slot: _Slot, process: BaseProcess) -> None:
        code = process.exitcode
        how = describe_exit(code)
        released = self._release(slot, f"worker died: {how}")
        if code == exitcodes.BOOT_FAILURE:
            log.error("worker-%d cannot start (see its error above); stopping", slot.index)
            self._fail(exitcodes.BOOT_FAILURE)
            return
        if self._stopping or (code == exitcodes.OK and self._settings.worker.burst):
            slot.retired = True
            return
        if code == exitcodes.RECYCLE:
            log.info("worker-%d (pid %s) recycled", slot.index, process.pid)
            slot.failures, slot.start_after = 0, self._clock()
            return
        lived = self._clock() - slot.started_at
        slot.failures = 0 if lived > _STABLE_S else slot.failures + 1
        delay = (
            backoff_s(
                slot.failures,
                base_s=self._settings.restart_base_s,
                cap_s=self._settings.restart_cap_s,
            )
            if slot.failures
            else 0.0
        )
        slot.start_after = self._clock() + delay
        log.warning(
            "worker-%d (pid %s) died: %s; %d job(s) handed back; restarting in %.1f s",
            slot.index,
            process.pid,
            how,
            released,
            delay,
        )

    def _check_backend(self) -> None:
        """Ask the backend for setup warnings now and then (e.g. a Redis that restarted empty).

        Failing to reach the backend is not fatal here: the workers log and retry on their own.
        """
        self._next_check = self._clock() + _CHECK_EVERY_S
        try:
            self.warnings = self._queue.check_server()
        except ConveyorError as exc:
            log.warning("cannot check the backend: %s", exc)

    def _report(self) -> None:
        """A progress line for the logs of a long-running worker: totals and the recent rate."""
        totals = total(slot.stats.block for slot in self._slots)
        settled = totals.count(Field.DONE) + totals.count(Field.DEAD)
        now = self._clock()
        last_settled, last_at = self._last_report
        self._last_report = (settled, now)
        if settled == last_settled:
            return
        log.info(
            "done %d, failed %d, retried %d, dead-lettered %d, running %d (%.1f jobs/s)",
            totals.count(Field.DONE),
            totals.count(Field.FAILED),
            totals.count(Field.RETRIED),
            totals.count(Field.DEAD),
            totals.count(Field.RUNNING),
            (settled - last_settled) / max(now - last_at, 1e-9),
        )

    def _release(self, slot: _Slot, reason: str) -> int:
        """Hand back a dead child's jobs; only those it was running count as suspects."""
        suspects = RunningBoard(slot.board).job_ids() if slot.board is not None else None
        try:
            return self._queue.release(slot.consumer_id, reason, suspects=suspects)
        except ConveyorError as exc:
            # Not lost: the backend's lease expiry hands the jobs back once it is reachable.
            log.warning(
                "cannot hand back worker-%d's jobs now (%s); its lease will", slot.index, exc
            )
            return 0

    def _restart_due(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        for slot in self._slots:
            if slot.process is None and not slot.retired and now >= slot.start_after:
                self._spawn(slot)
        if all(slot.retired for slot in self._slots):
            self.exit_code = exitcodes.OK

    def _kill_hung(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if not self._alive(slot):
                continue
            silent = now - slot.stats.get(Field.HEARTBEAT)
            if silent > self._settings.hang_timeout_s:
                log.error("worker-%d loop silent for %.0f s; killing it", slot.index, silent)
                self._kill(slot)

    def _enforce_deadlines(self) -> None:
        now = self._clock()
        if self._hard_at is not None and now >= self._hard_at:
            log.warning("shutdown deadline passed")
            self._stop_hard(now)
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None  # once: the reaper takes it from here
            for slot in self._slots:
                if self._alive(slot):
                    log.error("worker-%d did not stop; killing it", slot.index)
                    self._kill(slot)

    def _fail(self, code: int) -> None:
        for slot in self._slots:
            if self._alive(slot):
                self._kill(slot)
                assert slot.process is not None
                slot.process.join()
                self._release(slot, "supervisor stopped")
            slot.process = None
        self.exit_code = code

    def _kill(self, slot: _Slot) -> None:
        if slot.process is not None and slot.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        for slot in self._slots:
            if self._alive(slot) and slot.process is not None and slot.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)

    def _next_timer(self) -> float:
        timers = [s.start_after for s in self._slots if s.process is None and not s.retired]
        timers += [t for t in (self._hard_at, self._kill_at) if t is not None]
        if not timers:
            return 3600.0
        return max(0.0, min(timers) - self._clock())

    @staticmethod
    def _alive(slot: _Slot) -> bool:
        return slot.process is not None and slot.process.exitcode is None
