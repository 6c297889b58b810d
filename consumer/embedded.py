"""``conveyor run``: producers and a supervised consumer pool in one process tree.

The parent owns the queue (for ``memory://`` the queue lives in it), starts ``--producers``
producer processes that run the feed, and a supervisor with the worker pool. The run ends once
every produced job is done or dead-lettered; a run that stops making progress ends too, and
reports the jobs it could not account for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from consumer.report import Progress, RunSummary
from consumer.signals import SignalLog, interrupts_ignored
from consumer.supervisor import Supervisor, SupervisorSettings
from producer.process import ProducerSpec, producer_main
from services import exitcodes
from services.jobqueue import JobQueue
from services.stats import Field, Stats, Totals, new_block, total

log = logging.getLogger("conveyor.run")

_DEAD_LIMIT = 1_000_000
_DEAD_EVERY_S = 0.5


@dataclass(frozen=True)
class Tally:
    """Where the run stands after one turn."""

    produced: int
    totals: Totals
    dead: int


@dataclass(frozen=True)
class RunSettings:
    """One embedded run."""

    supervisor: SupervisorSettings
    producers: int = 2
    feed: str = "services.demo:feed"
    feed_options: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    stall_timeout_s: float = 60.0
    """End the run when nothing settles for this long after the producers are done."""


class Pipeline:
    """The producers, the supervisor and the bookkeeping that decides when the run is over."""

    def __init__(self, queue: JobQueue, settings: RunSettings) -> None:
        self._queue = queue
        self._settings = settings
        self._ctx: Any = multiprocessing.get_context(settings.supervisor.start_method)
        self.supervisor = Supervisor(queue, settings.supervisor)
        self._producers: list[tuple[BaseProcess, Stats]] = []
        self._dead_before = len(queue.dead_letters(settings.queue, limit=_DEAD_LIMIT))
        self.producer_failures = 0
        self.started = time.monotonic()
        self._last_settled = (0, time.monotonic())
        self.stalled = False
        self.interrupted = False
        self._reaped: set[int] = set()
        self._dead, self._dead_read_at = 0, -_DEAD_EVERY_S

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

    def dead(self) -> int:
        """Jobs dead-lettered during this run; read from the backend at most every 0.5 s,
        since listing dead letters moves their bodies (a whole ZRANGE on Redis)."""
        now = time.monotonic()
        if now - self._dead_read_at >= _DEAD_EVERY_S:
            letters = self._queue.dead_letters(self._settings.queue, limit=_DEAD_LIMIT)
            self._dead, self._dead_read_at = len(letters) - self._dead_before, now
        return self._dead

    def tally(self) -> Tally:
        """Produced, worker counters and dead letters, read once for one turn of the loop."""
        return Tally(self.produced(), total(s.block for s in self.supervisor.stats), self.dead())

    def summary(self) -> RunSummary:
        letters = self._queue.dead_letters(self._settings.queue, limit=_DEAD_LIMIT)
        return RunSummary(
            produced=self.produced(),
            totals=total(stats.block for stats in self.supervisor.stats),
            dead=len(letters) - self._dead_before,
            elapsed_s=time.monotonic() - self.started,
            dead_letters=letters[: max(0, len(letters) - self._dead_before)],
        )

    def step(self, signals: SignalLog) -> Tally:
        """One turn: wait a little, react to signals, reap producers, end the run when due."""
        self.supervisor.run_once(0.1, wake_fds=(signals.wakeup_fd or -1,))
        if signals.take():
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
        settled = tally.totals.count(Field.DONE) + tally.dead
        if settled >= tally.produced:
            return True
        now = time.monotonic()
        if settled != self._last_settled[0]:
            self._last_settled = (settled, now)
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
            self._queue.release(f"producer-{index}", "producer exited")

    def _stop_producers(self) -> None:
        for process, _ in self._producers:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)


def run_pipeline(
    queue: JobQueue,
    settings: RunSettings,
    signals: SignalLog,
    progress: Progress,
) -> tuple[int, RunSummary]:
    """Run producers and the pool to the end; returns the exit code and the summary."""
    pipeline = Pipeline(queue, settings)
    pipeline.start()
    while pipeline.supervisor.exit_code is None:
        tally = pipeline.step(signals)
        progress.update(tally.produced, tally.totals, tally.dead, producing=pipeline.producing)
    progress.close()
    summary = pipeline.summary()
    code = pipeline.supervisor.exit_code
    if pipeline.interrupted:
        return exitcodes.INTERRUPTED, summary
    if code == exitcodes.OK and (summary.accounted < summary.produced or pipeline.stalled):
        code = exitcodes.UNACCOUNTED
    if code == exitcodes.OK and pipeline.producer_failures:
        code = exitcodes.ERROR
    return code, summary
