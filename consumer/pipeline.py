"""``conveyor run``: producers and a supervised consumer pool in one process tree.

The parent owns the queue (for ``memory://`` the queue lives in it), starts ``--producers``
producer processes that run the feed, and a supervisor with the worker pool.

The backend keeps the books, not the workers: each turn reads the queue's ``counts`` (cheap, no
listing), and the run ends once the producers are finished and the backend holds no job of the
queue that will still run (nothing waiting, delayed or in flight). Done and dead are the
backend's totals since the run began, so a job counts once it is settled there, never when a
worker merely finished it. Unaccounted = produced - (done + dead); a shortfall (jobs lost) and
an excess (jobs settled twice) both fail the run. A run that stops making progress ends too.

Given a ``FleetLink``, the pool is a fleet member like a ``conveyor worker`` (``conveyor scale``
resizes it); SIGTTIN and SIGTTOU then move its group's total by one, and only the other signals
interrupt the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from consumer.pool_metrics import PoolMetrics
from consumer.report import Progress, RunSummary, Tally
from consumer.signals import SignalLog, interrupts_ignored
from consumer.sizing import RESIZE_SIGNALS
from consumer.supervisor import FleetLink, Supervisor, SupervisorSettings
from producer.process import ProducerSpec, producer_main
from services import exitcodes
from services.protocol import ConsumerControl, DeadLetter, QueueCounts, QueueInspector
from services.stats import Field, Stats, Totals, new_block, total

log = logging.getLogger("conveyor.run")

SUMMARY_LETTERS = 1_000
"""Dead letters listed for the summary's by-error grouping (the newest; counts come from
``counts``, never from a listing)."""


class RunQueue(ConsumerControl, QueueInspector, Protocol):
    """What a run needs of its queue: start and reclaim consumers, read counts and dead letters."""


def run_tally(produced: int, totals: Totals, before: QueueCounts, now: QueueCounts) -> Tally:
    """The tally of a run that began when the backend's counts were ``before``."""
    return Tally(produced, totals, now.done - before.done, now.dead - before.dead, now.unsettled)


def run_over(tally: Tally, *, producing: bool) -> bool:
    """A run is over once nothing is produced any more and the backend holds none of its jobs."""
    return not producing and tally.unsettled == 0


@dataclass(frozen=True)
class RunSettings:
    """What one ``conveyor run`` runs: the pool, the producers and their feed, the queue."""

    supervisor: SupervisorSettings
    producers: int = 2
    feed: str = "services.demo:feed"
    feed_options: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    stall_timeout_s: float = 60.0
    """End the run when nothing settles for this long after the producers are done."""


class Pipeline:
    """The producers, the supervisor and the bookkeeping that decides when the run is over."""

    def __init__(
        self,
        queue: RunQueue,
        settings: RunSettings,
        metrics: PoolMetrics | None = None,
        *,
        fleet: FleetLink | None = None,
    ) -> None:
        self._queue = queue
        self._settings = settings
        self._ctx: Any = multiprocessing.get_context(settings.supervisor.start_method)
        self.supervisor = Supervisor(queue, settings.supervisor, metrics=metrics, fleet=fleet)
        self._producers: list[tuple[BaseProcess, Stats]] = []
        self._before = queue.counts(settings.queue)
        self.producer_failures = 0
        self.started = time.monotonic()
        newest = queue.dead_letters(settings.queue, limit=1)
        self._newest_before = newest[0] if newest else None
        """The newest dead letter before the run (letters are listed newest first)."""
        self._last_settled = (0, time.monotonic())
        self.stalled = False
        self.interrupted = False
        self._reaped: set[int] = set()

    def start(self) -> None:
        self.supervisor.start()
        for index in range(self._settings.producers):
            stats = Stats(new_block())
            spec = ProducerSpec(
                index=index,
                count=self._settings.producers,
                connector=self._queue.connector(f"producer-{index}"),
                feed=self._settings.feed,
                jobs=self._settings.supervisor.jobs,
                queue=self._settings.queue,
                stats_block=stats.block,
                feed_options=self._settings.feed_options,
                log_level=self._settings.supervisor.log_level,
                log_format=self._settings.supervisor.log_format,
            )
            process = self._ctx.Process(
                target=producer_main, args=(spec,), name=f"producer-{index}"
            )
            with interrupts_ignored():
                process.start()
            self._producers.append((process, stats))

    @property
    def producing(self) -> bool:
        return any(process.exitcode is None for process, _ in self._producers)

    def produced(self) -> int:
        return sum(int(stats.get(Field.PRODUCED)) for _, stats in self._producers)

    def tally(self) -> Tally:
        """Produced, worker counters and the backend's counts, read once for one turn."""
        return run_tally(
            self.produced(),
            total(s.block for s in self.supervisor.stats),
            self._before,
            self._queue.counts(self._settings.queue),
        )

    def summary(self) -> RunSummary:
        tally = self.tally()
        return RunSummary(
            produced=tally.produced,
            totals=tally.totals,
            done=tally.done,
            dead=tally.dead,
            elapsed_s=time.monotonic() - self.started,
            dead_letters=self._letters_of_this_run(),
            unsettled=tally.unsettled,
        )

    def _letters_of_this_run(self) -> list[DeadLetter]:
        letters = self._queue.dead_letters(self._settings.queue, limit=SUMMARY_LETTERS)
        # Cut at the newest letter from before the run (the backend's clock may not be ours).
        if self._newest_before in letters:
            return letters[: letters.index(self._newest_before)]
        return letters

    def step(self, signals: SignalLog) -> Tally:
        """One turn: wait a little, react to signals, reap producers, end the run when due."""
        wake = () if signals.wakeup_fd is None else (signals.wakeup_fd,)
        self.supervisor.run_once(0.1, wake_fds=wake)
        taken = signals.take()
        for signum in taken:
            if signum in RESIZE_SIGNALS:
                name = signal.Signals(signum)
                self.supervisor.step_size(RESIZE_SIGNALS[name], name.name)
        if any(signum not in RESIZE_SIGNALS for signum in taken):
            if not self.interrupted:
                log.info("interrupted: stopping producers, draining the pool (again: stop now)")
            self.interrupted = True
            self._stop_producers()
            self.supervisor.stop()
        self._reap_producers()
        tally = self.tally()
        if not self.producing and not self.supervisor.stopping and self._finished(tally):
            self.supervisor.stop()
        return tally

    def _finished(self, tally: Tally) -> bool:
        if run_over(tally, producing=False):
            return True
        now = time.monotonic()
        if tally.settled != self._last_settled[0]:
            self._last_settled = (tally.settled, now)
        elif now - self._last_settled[1] > self._settings.stall_timeout_s:
            log.error("no job settled for %g s; giving up", self._settings.stall_timeout_s)
            self.stalled = True
            return True
        return False

    def _reap_producers(self) -> None:
        for index, (process, _) in enumerate(self._producers):
            if index in self._reaped or process.exitcode is None:
                continue
            self._reaped.add(index)
            process.join()
            if process.exitcode != 0:
                self.producer_failures += 1
            self._queue.reclaim(f"producer-{index}", "producer exited")

    def _stop_producers(self) -> None:
        for process, _ in self._producers:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)


def run_pipeline(
    queue: RunQueue,
    settings: RunSettings,
    signals: SignalLog,
    progress: Progress,
    metrics: PoolMetrics | None = None,
    *,
    fleet: FleetLink | None = None,
) -> tuple[int, RunSummary]:
    """Run producers and the pool to the end; returns the exit code and the summary."""
    pipeline = Pipeline(queue, settings, metrics, fleet=fleet)
    pipeline.start()
    while pipeline.supervisor.exit_code is None:
        tally = pipeline.step(signals)
        progress.update(tally, producing=pipeline.producing)
    progress.close()
    summary = pipeline.summary()
    code = pipeline.supervisor.exit_code
    if pipeline.interrupted:
        return exitcodes.INTERRUPTED, summary
    if code == exitcodes.OK and (summary.unaccounted != 0 or pipeline.stalled):
        code = exitcodes.UNACCOUNTED
    if code == exitcodes.OK and pipeline.producer_failures:
        code = exitcodes.ERROR
    return code, summary
