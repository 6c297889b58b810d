"""A worker process: the top-level entry point the supervisor starts, spawn-safe.

Build in the parent, act in the child: ``ChildSpec`` (``consumer.child_spec``) is plain
picklable data; the supervisor imports this module only in the child (``consumer.process_handle``
starts ``run_child``), so the worker stack is the child's import, not its. The child loads the
registry, opens its own queue connection through the connector, builds its worker and runs it
until told to stop, until its supervisor is gone, or until it must be recycled (when and how it
stops, and with which exit code, is ``consumer.child_stop``'s call). It marks itself booted
(``Field.BOOTED``) once it could load, connect and start: a later exit is not a boot failure.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable

from consumer.board import RunningBoard
from consumer.child_spec import ChildSpec
from consumer.child_stop import ChildStop
from consumer.gate import StartGate
from consumer.mailbox import Mailbox
from consumer.signals import ignore_interrupts, recorded_signals
from consumer.worker import Worker
from services import exitcodes
from services.errors import ConfigError
from services.lifecycle import die_with_parent, exit_now, parent_alive
from services.loading import load_registry
from services.logs import setup_logging
from services.registry import Registry
from services.stats import Field, Stats

__all__ = ["ChildSpec", "child_main", "run_worker", "start_worker"]

log = logging.getLogger("conveyor.child")


def child_main(spec: ChildSpec) -> None:
    """Entry point of a worker process; always ends the process with an exit code."""
    ignore_interrupts()
    die_with_parent()
    setup_logging(spec.logs, process=spec.name, consumer=spec.consumer_id or None)
    try:
        registry = load_registry(spec.jobs, max_result_bytes=spec.settings.max_result_bytes)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        exit_now(exitcodes.BOOT_FAILURE)
    with recorded_signals(signal.SIGTERM, signal.SIGQUIT) as signals:
        stats = Stats(spec.stats_block, spec.job_counters)
        worker = start_worker(spec, registry, stats)
        stats.set(Field.BOOTED, 1)
        stop = ChildStop(
            worker,
            signals,
            spec.settings,
            supervisor_alive=functools.partial(parent_alive, spec.parent_pid),
            durable=spec.connector.durable,
        )
        code = run_worker(stop)
    exit_now(code)


def start_worker(spec: ChildSpec, registry: Registry, stats: Stats) -> Worker:
    """Open this child's queue, build its worker (the gate and the running board go into the
    executor's mailbox) and start the executor."""
    queue = spec.connector.open()
    gate = StartGate(queue, stopping=stats.stop_requested)
    mailbox = Mailbox(board=RunningBoard(spec.board_block), gate=gate, stats=stats)
    worker = Worker(queue, registry, spec.shape.make_executor(mailbox), spec.settings, stats=stats)
    worker.start()
    return worker


def run_worker(stop: ChildStop, clock: Callable[[], float] = time.monotonic) -> int:
    """Step ``stop`` until the child must end; returns its exit code."""
    while (code := stop.run_once(clock())) is None:
        pass
    return code
