"""A worker process: the top-level entry point the supervisor starts, spawn-safe.

Build in the parent, act in the child: ``ChildSpec`` is plain picklable data; the child loads the
registry, opens its own queue connection through the connector and runs its worker until told
to stop, until its supervisor is gone, or until it must be recycled. It marks itself booted
(``Field.BOOTED``) once it could load, connect and start: a later exit is not a boot failure.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import time
from dataclasses import dataclass
from typing import Any

from consumer.board import RunningBoard
from consumer.pool_shape import PoolShape
from consumer.signals import SignalLog, ignore_interrupts, recorded_signals
from consumer.worker import State, Worker
from services import exitcodes
from services.errors import ConfigError
from services.lifecycle import die_with_parent, exit_now, parent_alive
from services.loading import load_registry
from services.protocol import Connector
from services.settings import WorkerSettings
from services.stats import Field, Stats

log = logging.getLogger("conveyor.child")


@dataclass(frozen=True)
class ChildSpec:
    """Everything a worker process needs, built by the supervisor."""

    name: str
    connector: Connector
    jobs: str
    shape: PoolShape
    settings: WorkerSettings
    stats_block: Any
    board_block: Any
    parent_pid: int
    log_level: int = logging.INFO


def child_main(spec: ChildSpec) -> None:
    """Entry point of a worker process; always ends the process with an exit code."""
    ignore_interrupts()
    die_with_parent()
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s {spec.name} %(levelname)s %(message)s"
    )
    try:
        registry = load_registry(spec.jobs, max_result_bytes=spec.settings.max_result_bytes)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        exit_now(exitcodes.BOOT_FAILURE)
    with recorded_signals(signal.SIGTERM, signal.SIGQUIT) as signals:
        queue = spec.connector.open()
        executor = spec.shape.make_executor()
        executor.mailbox.board = RunningBoard(spec.board_block)
        stats = Stats(spec.stats_block)
        worker = Worker(queue, registry, executor, spec.settings, stats=stats)
        worker.start()
        stats.set(Field.BOOTED, 1)
        code = run_worker(worker, signals, spec)
    exit_now(code)


def run_worker(worker: Worker, signals: SignalLog, spec: ChildSpec) -> int:
    """Turn the worker's loop until it stops; returns the child's exit code.

    A configuration error met while running (the backend now refuses our credentials or ACL)
    ends the child with CONFIG_FAILURE: restarting it would only be refused again. Its jobs stay
    leased in the backend and go to another consumer once the lease expires.
    """
    try:
        return _turn_until_stopped(worker, signals, spec)
    except ConfigError as exc:
        log.error("configuration error, stopping: %s", exc)
        return exitcodes.CONFIG_FAILURE


def _turn_until_stopped(worker: Worker, signals: SignalLog, spec: ChildSpec) -> int:
    """The loop of ``run_worker``.

    SIGTERM drains (finish running jobs within the shutdown timeout); SIGQUIT or the
    deadline hands every unfinished job back at once.
    """
    deadline: float | None = None
    while worker.state is not State.STOPPED:
        if not parent_alive(spec.parent_pid):
            orphaned(worker, durable=spec.connector.durable)
            return exitcodes.ERROR
        received = signals.take()
        if received:
            # SIGQUIT: stop now. Every SIGTERM only drains: a SIGTERM sent to the whole process
            # group reaches us twice (directly, then through the supervisor); the supervisor
            # answers a real second stop request with SIGQUIT.
            if signal.SIGQUIT in received:
                worker.stop_now()
                break
            if worker.state is State.RUNNING:
                worker.drain()
                deadline = time.monotonic() + spec.settings.shutdown_timeout_s
        if deadline is not None and time.monotonic() > deadline:
            worker.stop_now()
            break
        recycle = _recycle_reason(worker, spec.settings)
        if recycle is not None and worker.state is State.RUNNING:
            log.info("recycling: %s", recycle)
            worker.drain()
            deadline = time.monotonic() + spec.settings.shutdown_timeout_s
        if spec.settings.burst and worker.idle and worker.state is State.RUNNING:
            log.info("queues are empty; burst worker exits")
            worker.drain()
        worker.run_once()
    worker.flush(spec.settings.shutdown_timeout_s)
    if worker.recycle_reason is not None or _recycle_reason(worker, spec.settings):
        return exitcodes.RECYCLE
    return exitcodes.OK


def orphaned(worker: Worker, *, durable: bool) -> None:
    """The supervisor is gone: hand back this worker's jobs, or say plainly they are lost."""
    if durable:
        log.warning("supervisor is gone; handing back my %d job(s) and exiting", worker.held)
        worker.stop_now()
        return
    # The queue lived in the parent: nothing to hand back to, and nothing queued survived it.
    log.error(
        "the memory queue died with its parent: every job still queued there is lost; "
        "this worker held %d (lost too); exiting",
        worker.held,
    )


def _recycle_reason(worker: Worker, settings: WorkerSettings) -> str | None:
    if worker.recycle_reason is not None:
        return worker.recycle_reason
    if settings.max_jobs is not None and worker.jobs_settled >= settings.max_jobs:
        return f"ran {worker.jobs_settled} jobs (--max-jobs-per-child {settings.max_jobs})"
    # Between jobs only: a process that starts above the limit must still make progress.
    if settings.max_memory_mb is not None and worker.jobs_settled > 0:
        rss_mb = resident_memory_mb()
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
