"""The supervisor: starts worker processes, reaps them, restarts them, stops them on time.

A small loop, stepped by ``run_once`` (``run`` turns it until the end, under ``SIGNALS``)::

    wait for a child to die, a signal or the timeout -> act on signals (stop first, so that
    children stopping on the same signal are not taken for crashes) -> reap: say how each
    child ended, hand its jobs back -> fill empty seats -> kill hung children -> monitoring
    -> deadlines

What happens after a child ended is decided by ``consumer.restart_policy`` (a pure function):
a child that cannot even start stops the supervisor with BOOT_FAILURE instead of a restart
storm; a child killed while doing work is replaced at once; one dying before it did any work
is restarted with capped exponential backoff.

Stopping is two-stage (``consumer.stopping``): ``stop()`` marks every child's stats block
STOPPING (so no job starts after the stop was received) and asks children to drain (SIGTERM) within
``shutdown_timeout_s``; a second ``stop()``, ``stop_now()`` or the deadline asks again with
SIGQUIT (children then hand back every unfinished job at once), and a child still alive after
a short grace is killed and its jobs reclaimed by the supervisor.

``resize(n)`` (SIGTTIN: one more, SIGTTOU: one less) changes the number of seats live
(``consumer.sizing``): new seats start at the next turn; each seat a shrink sends away gets
that same two-stage stop of its own, and is removed once its process ended and its jobs were
reclaimed. Backend checks, alarms, progress lines and metrics live in ``consumer.monitoring``
(given a ``PoolMetrics``, each seat's children count their jobs into it); the children are
reached only through ``consumer.process_handle``, so tests run the loop on fakes.

Given a ``FleetLink``, the supervisor is a fleet member (``consumer.fleet_member``): it joins
before its first process starts, and each turn beats its record, resizes to its share of its
group's desired total (0 included: it then runs no worker and keeps beating until a signal stops
it), passes paused queues to its children (``set_paused``) and, as its group's leader,
autoscales it; SIGTTIN/SIGTTOU then move the group's total; it leaves the fleet when a stop
begins.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Collection
from multiprocessing.connection import wait

from consumer.board import new_board
from consumer.fetching import pause_mask
from consumer.fleet_member import FleetLink, FleetMember
from consumer.monitoring import Monitor
from consumer.pool_metrics import PoolMetrics
from consumer.process_handle import Launcher, spawner
from consumer.reaping import Reaper
from consumer.seats import Roster, Seat
from consumer.signals import SignalLog, recorded_signals
from consumer.sizing import RESIZE_SIGNALS, check_size, seat_changes
from consumer.stopping import Stopper
from consumer.supervisor_settings import SupervisorSettings
from services import exitcodes
from services.protocol import ConsumerControl
from services.stats import Field, Stats

log = logging.getLogger("conveyor.supervisor")

__all__ = ["SIGNALS", "FleetLink", "Supervisor", "SupervisorSettings"]

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, *RESIZE_SIGNALS)
"""What the supervisor's loop acts on: stop, stop (Ctrl+C), stop now, one more, one less."""


class Supervisor:
    """Keeps ``size`` worker processes alive on ``queue``'s backend (``shape.processes`` at
    first); ``launch`` starts them (the real ``spawner`` unless a test passes fakes); with
    ``fleet``, ``size`` follows its share of its group's desired total."""

    def __init__(
        self,
        queue: ConsumerControl,
        settings: SupervisorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        launch: Launcher | None = None,
        metrics: PoolMetrics | None = None,
        fleet: FleetLink | None = None,
    ) -> None:
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._launch = launch or spawner(settings.start_method)
        self._size = settings.shape.processes
        self._roster = Roster(self._size)
        self._metrics = metrics
        self._monitor = Monitor(queue, self._roster, clock=clock, metrics=metrics)
        self._reaper = Reaper(queue, settings.restart_policy, burst=settings.worker.burst)
        drain_s = settings.worker.shutdown_timeout_s
        self._stopper = Stopper(self._roster, drain_s=drain_s, clock=clock)
        self._paused = 0
        """The pause mask (``consumer.fetching``) every child's stats block carries."""
        self.fleet = FleetMember(fleet, self, settings) if fleet else None
        self.exit_code: int | None = None
        """Set when the supervisor has finished: every child is gone."""

    @property
    def stats(self) -> list[Stats]:
        """Every seat's counters (removed seats' too), for progress and summaries."""
        return self._roster.stats()

    @property
    def warnings(self) -> list[str]:
        """The backend's setup warnings from the last check, then every alarm so far (sticky)."""
        return self._monitor.warnings

    @property
    def size(self) -> int:
        """How many worker processes it keeps (seats sent away by a shrink not counted)."""
        return self._size

    def pids(self) -> list[int]:
        """Process ids of the children alive now, by seat."""
        return [s.process.pid for s in self._roster if s.alive and s.process and s.process.pid]

    def running(self) -> int:
        """Jobs the live children are running now (their running boards, not their prefetch)."""
        return self._roster.running()

    @property
    def stopping(self) -> bool:
        return self._stopper.stopping

    def run(self) -> int:
        """Start, then turn the loop under ``SIGNALS`` until every child is gone; the exit code.

        The supervisor acts on signals itself, before it reaps: children stopped by the same
        signal (sent to the whole process group) are then not taken for crashes.
        """
        with recorded_signals(*SIGNALS) as signals:
            self.start()
            while self.exit_code is None:
                self.run_once(0.5, signals=signals)
        return self.exit_code

    def start(self) -> None:
        """Check the backend's setup (it logs what is wrong), join the fleet (its share and
        pauses known before any child starts), then start every child."""
        self._monitor.check_backend()
        if self.fleet is not None:
            self.fleet.turn(self._clock())
        for seat in self._roster:
            self._spawn(seat)

    def run_once(
        self,
        timeout_s: float = 0.5,
        *,
        wake_fds: tuple[int, ...] = (),
        signals: SignalLog | None = None,
    ) -> None:
        """Wait up to ``timeout_s`` for a child to exit, a wake fd or a signal, then act.

        ``signals``: SIGQUIT stops hard at once, SIGTTIN and SIGTTOU are ``step_size`` by
        one; any other signal is a ``stop()``. They are acted on before children are reaped, so
        that a signal that reached the whole process group does not make the children it
        stopped look like crashes. Every time comes from the clock given to the constructor.
        """
        fds = (*wake_fds, *((signals.wakeup_fd,) if signals and signals.wakeup_fd else ()))
        sentinels = [s.process.sentinel for s in self._roster if s.process and s.alive]
        ready = [fd for fd in (*sentinels, *fds) if fd is not None]
        wait(ready, timeout=max(0.0, min(timeout_s, self._next_timer())))
        for signum in signals.take() if signals is not None else ():
            self._on_signal(signum)
        self._reap()
        if self.exit_code is not None:
            return
        self._fill_seats()
        self._kill_hung()
        self._monitor.turn()
        self._stopper.enforce_deadlines()
        if self.fleet is not None and not self.stopping:
            self.fleet.turn(self._clock())
        # Done only once every child has been reaped, so each one's jobs were handed back.
        if self.stopping and all(seat.process is None for seat in self._roster):
            self.exit_code = exitcodes.OK

    def stop(self) -> None:
        """First call: drain within the shutdown timeout. Second call: stop hard now."""
        self._leave_fleet()
        self._stopper.stop()

    def stop_now(self) -> None:
        """The hard stop at once (SIGQUIT): children hand back every unfinished job."""
        self._leave_fleet()
        self._stopper.stop_now()

    def step_size(self, step: int, by: str) -> None:
        """One worker process more or less (``by``: SIGTTIN, SIGTTOU): in a fleet the group's
        desired total moves (this supervisor's share follows at its next turn); alone, this
        supervisor resizes, never below one process."""
        if self.fleet is not None:
            self.fleet.nudge(step, by)
            return
        try:
            self.resize(self._size + step)
        except ValueError as exc:
            log.warning("%s", exc)

    def set_paused(self, queues: Collection[str]) -> None:
        """From now on, the children take no job from ``queues`` (``conveyor pause``)."""
        self._paused = pause_mask(self._settings.worker.queues, queues)
        for seat in self._roster:
            seat.stats.set(Field.PAUSED, self._paused)

    def resize(self, size: int) -> None:
        """Keep ``size`` worker processes from now on (ValueError below 1, or below 0 in a
        fleet; no-op while stopping).

        Growing adds seats whose processes start at the next turn. Shrinking sends seats away,
        idle ones first (``consumer.sizing``): each drains like a stopping child (SIGTERM, then
        SIGQUIT at the shutdown deadline, then a kill), then its seat is removed, never
        restarted.
        """
        check_size(size, minimum=0 if self.fleet else 1)
        if self.stopping:
            return
        if size != self._size:
            log.info("resizing: %d -> %d worker process(es)", self._size, size)
        self._size = size
        self._apply_size()

    # -- seats ------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGQUIT:
            self.stop_now()
        elif signum in RESIZE_SIGNALS:
            name = signal.Signals(signum)
            self.step_size(RESIZE_SIGNALS[name], name.name)
        else:
            self.stop()

    def _apply_size(self) -> None:
        seats = list(self._roster)
        present = [seat.index for seat in seats]
        staying = [seat for seat in seats if not seat.leaving]
        leaving = [seat.index for seat in seats if seat.leaving]
        shrinking = len(staying) > self._size  # only then does it matter who is busy
        busy = [s.index for s in staying if shrinking and s.alive and s.running_jobs()]
        changes = seat_changes(present, leaving, self._size, busy=busy)
        for index in changes.add:
            self._roster.add(index)
        for seat in self._roster:
            if seat.index in changes.leave:
                self._send_away(seat)

    def _send_away(self, seat: Seat) -> None:
        if seat.process is None:
            # Waiting for a restart: its last process was reaped and its jobs reclaimed.
            self._roster.remove(seat)
            return
        log.info("worker-%d leaves (the pool shrinks to %d): draining", seat.index, self._size)
        self._stopper.send_away(seat)

    def _fill_seats(self) -> None:
        if self.stopping:
            return
        self._apply_size()  # a number a removed seat held may be wanted again
        now = self._clock()
        for seat in self._roster:
            if seat.process is None and not seat.retired and now >= seat.start_after:
                self._spawn(seat)
        seats = list(self._roster)  # none at all: a fleet's share of 0, the end only in burst
        if all(seat.retired for seat in seats) and (seats or self._settings.worker.burst):
            self.exit_code = exitcodes.OK

    def _spawn(self, seat: Seat) -> None:
        seat.prepare(new_board(self._settings.shape.slots), stopping=self.stopping)
        seat.stats.set(Field.PAUSED, self._paused)
        counters = self._metrics.counters(seat.index) if self._metrics else None
        connector = self._queue.connector(seat.consumer_id)
        spec = self._settings.child_spec(seat, connector, job_counters=counters)
        seat.process = self._launch(spec)
        seat.started_at = self._clock()
        seat.stats.set(Field.HEARTBEAT, time.monotonic())
        log.debug("started worker-%d (pid %s)", seat.index, seat.process.pid)

    def _reap(self) -> None:
        for seat in self._roster:
            process = seat.process
            if process is None or process.exitcode is None:
                continue
            process.join()
            code = self._reaper.after_exit(seat, process, now=self._clock(), stopping=self.stopping)
            if seat.leaving and seat.retired:
                self._roster.remove(seat)
            if code is not None:
                self._fail(code)
                return
            if not seat.retired:
                self._monitor.restarted()

    # -- children gone wrong ---------------------------------------------------------------
    def _kill_hung(self) -> None:
        now = time.monotonic()  # the children's heartbeats: CLOCK_MONOTONIC, system-wide
        for seat in self._roster:
            if not seat.alive:
                continue
            silent = now - seat.stats.get(Field.HEARTBEAT)
            if silent > self._settings.hang_timeout_s:
                log.error("worker-%d loop silent for %.0f s; killing it", seat.index, silent)
                seat.kill()

    def _leave_fleet(self) -> None:
        if self.fleet is not None:
            self.fleet.leave()

    def _fail(self, code: int) -> None:
        self._leave_fleet()
        for seat in self._roster:
            if seat.alive and seat.process is not None:
                seat.kill()
                seat.process.join()
                # Killed by us, not by a job: nothing it ran is a suspect.
                self._reaper.reclaim(seat, "supervisor stopped", set())
            seat.cleared()
        self.exit_code = code

    def _next_timer(self) -> float:
        timers = [s.start_after for s in self._roster if s.process is None and not s.retired]
        timers += self._stopper.timers()
        if not timers:
            return 3600.0
        return max(0.0, min(timers) - self._clock())
