"""The supervisor: starts worker processes, reaps them, restarts them, stops them on time.

A small loop, stepped by ``run_once``::

    wait for a child to die, a signal or the timeout -> act on signals (stop first, so that
    children stopping on the same signal are not taken for crashes) -> reap: say how each
    child ended, hand its jobs back -> restart due seats -> kill hung children -> deadlines

What happens after a child ended is decided by ``consumer.restart_policy`` (a pure function):
a child that cannot even start stops the supervisor with BOOT_FAILURE instead of a restart
storm; a child killed while doing work is replaced at once; one dying before it did any work
is restarted with capped exponential backoff.

Stopping is two-stage: ``stop()`` marks every child's stats block STOPPING (so no job starts
after the stop was received) and asks children to drain (SIGTERM) within
``shutdown_timeout_s``; a second ``stop()``, ``stop_now()`` or the deadline asks again with
SIGQUIT (children then hand back every unfinished job at once), and a child still alive after
a short grace is killed and its jobs released by the supervisor.
"""

from __future__ import annotations

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

from consumer.board import new_board
from consumer.child import ChildSpec, child_main
from consumer.pool_shape import PoolShape
from consumer.restart_policy import Action, Decision, RestartPolicy, decide, describe_exit
from consumer.seats import Seat
from consumer.shutdown import Shutdown, Step
from consumer.signals import SignalLog, interrupts_ignored
from consumer.supervision_watch import Watch
from services import exitcodes
from services.errors import ConveyorError
from services.protocol import JobQueue
from services.settings import WorkerSettings
from services.stats import Field, Stats, new_block

log = logging.getLogger("conveyor.supervisor")

_HARD_GRACE_S = 1.5
"""How long a child gets to hand back its jobs after the hard stop before it is killed."""


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

    @property
    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(base_s=self.restart_base_s, cap_s=self.restart_cap_s)


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
        self._seats = [Seat(i, Stats(new_block())) for i in range(settings.shape.processes)]
        self._watch = Watch(queue, self._seats, clock=clock)
        self._shutdown = Shutdown(drain_s=settings.worker.shutdown_timeout_s, grace_s=_HARD_GRACE_S)
        self.exit_code: int | None = None
        """Set when the supervisor has finished: every child is gone."""

    @property
    def stats(self) -> list[Stats]:
        """Every seat's counters, for progress and summaries."""
        return [seat.stats for seat in self._seats]

    @property
    def warnings(self) -> list[str]:
        """The backend's setup warnings from the last check, then every alarm so far (sticky)."""
        return self._watch.warnings

    def pids(self) -> list[int]:
        """Process ids of the children alive now, by seat."""
        return [s.process.pid for s in self._seats if s.alive and s.process and s.process.pid]

    def running(self) -> int:
        """Jobs the live children are running now (their running boards, not their prefetch)."""
        return sum(len(seat.running_jobs()) for seat in self._seats if seat.alive)

    @property
    def stopping(self) -> bool:
        return self._shutdown.stopping

    def start(self) -> None:
        """Check the backend's setup (it logs what is wrong), then start every child."""
        self._watch.check_backend()
        for seat in self._seats:
            self._spawn(seat)

    def run_once(
        self,
        timeout_s: float = 0.5,
        *,
        wake_fds: tuple[int, ...] = (),
        signals: SignalLog | None = None,
    ) -> None:
        """Wait up to ``timeout_s`` for a child to exit, a wake fd or a signal, then act.

        ``signals``: SIGQUIT stops hard at once; any other signal is a ``stop()``. They are
        acted on before children are reaped, so that a signal that reached the whole process
        group does not make the children it stopped look like crashes.
        """
        fds = (*wake_fds, *((signals.wakeup_fd,) if signals and signals.wakeup_fd else ()))
        sentinels = [s.process.sentinel for s in self._seats if s.process and s.alive]
        wait([*sentinels, *fds], timeout=max(0.0, min(timeout_s, self._next_timer())))
        for signum in signals.take() if signals is not None else ():
            if signum == signal.SIGQUIT:
                self.stop_now()
            else:
                self.stop()
        self._reap()
        if self.exit_code is not None:
            return
        self._restart_due()
        self._kill_hung()
        self._watch.turn(running=self.running())
        self._enforce_deadlines()
        # Done only once every child has been reaped, so each one's jobs were handed back.
        if self.stopping and all(seat.process is None for seat in self._seats):
            self.exit_code = exitcodes.OK

    def stop(self) -> None:
        """First call: drain within the shutdown timeout. Second call: stop hard now."""
        self._act(self._shutdown.request(self._clock()))

    def stop_now(self) -> None:
        """The hard stop at once (SIGQUIT): children hand back every unfinished job."""
        self._act(self._shutdown.hard_now(self._clock()))

    def _act(self, step: Step | None) -> None:
        # STOPPING before any signal: a child checks it before it starts a job, so no job
        # starts once the stop was received.
        if self.stopping:
            for seat in self._seats:
                seat.stats.set(Field.STOPPING, 1)
        if step is Step.DRAIN:
            timeout = self._settings.worker.shutdown_timeout_s
            log.info("draining: %d job(s) running, deadline %g s", self.running(), timeout)
            self._signal_all(signal.SIGTERM)
        elif step is Step.HARD:
            log.info("stopping now: unfinished jobs go back to the queue")
            # SIGQUIT, not a second SIGTERM: a child's SIGTERMs only ever drain.
            self._signal_all(signal.SIGQUIT)
        elif step is Step.KILL:
            for seat in self._seats:
                if seat.alive:
                    log.error("worker-%d did not stop; killing it", seat.index)
                    seat.kill()

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, seat: Seat) -> None:
        seat.prepare(new_board(self._settings.shape.slots), stopping=self.stopping)
        seat.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{seat.index}.{seat.generation}"
        spec = ChildSpec(
            name=f"worker-{seat.index}",
            connector=self._queue.connector(seat.consumer_id),
            jobs=self._settings.jobs,
            shape=self._settings.shape,
            settings=self._settings.worker,
            stats_block=seat.stats.block,
            board_block=seat.board,
            parent_pid=os.getpid(),
            log_level=self._settings.log_level,
        )
        process = self._ctx.Process(target=child_main, args=(spec,), name=spec.name)
        with interrupts_ignored():
            process.start()
        seat.process = process
        seat.started_at = self._clock()
        seat.stats.set(Field.HEARTBEAT, time.monotonic())
        log.debug("started worker-%d (pid %s)", seat.index, process.pid)

    def _reap(self) -> None:
        for seat in self._seats:
            process = seat.process
            if process is None or process.exitcode is None:
                continue
            process.join()
            self._after_exit(seat, process)
            if self.exit_code is not None:
                return

    def _after_exit(self, seat: Seat, process: BaseProcess) -> None:
        running = seat.running_jobs()
        death = seat.death(
            process.exitcode,
            self._clock(),
            running=running,
            stopping=self.stopping,
            burst=self._settings.worker.burst,
        )
        decision = decide(death, self._settings.restart_policy)
        how = describe_exit(process.exitcode)
        suspects = None if decision.count_all_held else running
        released = self._release(seat, f"worker died: {how}", suspects)
        seat.cleared()
        seat.failures, seat.idle_deaths = decision.failures, decision.idle_deaths
        if decision.action is Action.HALT:
            why = "cannot start" if decision.exit_code == exitcodes.BOOT_FAILURE else "was refused"
            log.error("worker-%d %s (see its error above); stopping", seat.index, why)
            self._fail(decision.exit_code)
        elif decision.action is Action.RETIRE:
            seat.retired = True
            log.debug("worker-%d (pid %s) ended: %s", seat.index, process.pid, how)
        else:
            seat.start_after = self._clock() + decision.delay_s
            _log_restart(seat, process, how, released, decision)

    def _release(self, seat: Seat, reason: str, suspects: set[str] | None) -> int:
        """Hand back a dead child's jobs; ``suspects`` (None: all) count as crash redeliveries."""
        try:
            return self._queue.reclaim(seat.consumer_id, reason, suspects=suspects)
        except ConveyorError as exc:
            # Not lost: the backend's lease expiry hands the jobs back once it is reachable.
            log.warning(
                "cannot hand back worker-%d's jobs now (%s); its lease will", seat.index, exc
            )
            return 0

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = self._clock()
        for seat in self._seats:
            if seat.process is None and not seat.retired and now >= seat.start_after:
                self._spawn(seat)
        if all(seat.retired for seat in self._seats):
            self.exit_code = exitcodes.OK

    def _kill_hung(self) -> None:
        now = time.monotonic()
        for seat in self._seats:
            if not seat.alive:
                continue
            silent = now - seat.stats.get(Field.HEARTBEAT)
            if silent > self._settings.hang_timeout_s:
                log.error("worker-%d loop silent for %.0f s; killing it", seat.index, silent)
                seat.kill()

    def _enforce_deadlines(self) -> None:
        step = self._shutdown.due(self._clock())
        if step is Step.HARD:
            log.warning("shutdown deadline passed")
        self._act(step)

    def _fail(self, code: int) -> None:
        for seat in self._seats:
            if seat.alive and seat.process is not None:
                seat.kill()
                seat.process.join()
                # Killed by us, not by a job: nothing it ran is a suspect.
                self._release(seat, "supervisor stopped", set())
            seat.cleared()
        self.exit_code = code

    def _signal_all(self, signum: int) -> None:
        for seat in self._seats:
            seat.send(signum)

    def _next_timer(self) -> float:
        timers = [s.start_after for s in self._seats if s.process is None and not s.retired]
        timers += self._shutdown.timers()
        if not timers:
            return 3600.0
        return max(0.0, min(timers) - self._clock())


def _log_restart(
    seat: Seat, process: BaseProcess, how: str, released: int, decision: Decision
) -> None:
    if not decision.crashed:
        log.info("worker-%d (pid %s) recycled", seat.index, process.pid)
        return
    counted = (
        f"; it died {decision.idle_deaths} times in a row without starting a job, so they "
        "count as crash redeliveries"
        if decision.count_all_held
        else ""
    )
    log.warning(
        "worker-%d (pid %s) died: %s; %d job(s) handed back%s; restarting in %.1f s",
        seat.index,
        process.pid,
        how,
        released,
        counted,
        decision.delay_s,
    )
