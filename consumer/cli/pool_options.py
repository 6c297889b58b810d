"""The worker-pool flags shared by ``conveyor run`` and ``conveyor worker`` (``--pool``,
``--concurrency``, ..., ``--max-result-bytes``), and the ``SupervisorSettings`` they become."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import SupervisorSettings
from services.cli.options import apply_options
from services.logs import LogSettings
from services.settings import DEFAULT_MAX_RESULT_BYTES, RetrySettings, WorkerSettings


def pool_options(func: Any) -> Any:
    """The worker-pool flags shared by ``run`` and ``worker``."""
    options = [
        click.option(
            "--pool",
            type=click.Choice([k.value for k in PoolKind]),
            default=PoolKind.PROCESSES.value,
            show_default=True,
            envvar="CONVEYOR_POOL",
            help="processes: CPU-bound jobs (one GIL per process). threads/asyncio: "
            "IO-bound jobs (waiting releases the GIL).",
        ),
        click.option(
            "--concurrency",
            "-c",
            type=click.IntRange(min=1),
            default=os.cpu_count() or 1,
            show_default="number of CPUs",
            envvar="CONVEYOR_CONCURRENCY",
            help="processes: how many processes; threads/asyncio: jobs at once per process.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            help="processes pool only: threads per process, for IO-bound jobs on every core.",
        ),
        click.option(
            "--processes",
            type=click.IntRange(min=1),
            help="threads/asyncio pools only: how many host processes (default 1).",
        ),
        click.option(
            "--job-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=300.0,
            show_default=True,
            metavar="SECONDS",
            help="Hard limit for a running job (a job's own timeout= wins).",
        ),
        click.option(
            "--shutdown-timeout",
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="On SIGTERM/SIGINT, how long running jobs get to finish; then they "
            "go back to the queue.",
        ),
        click.option(
            "--prefetch",
            type=click.IntRange(min=0),
            default=1,
            show_default=True,
            help="Jobs a process fetches beyond its free slots, at least; it fetches more "
            "while jobs are quick and the queue is deep. 0: only what it can start now.",
        ),
        click.option(
            "--max-jobs-per-child",
            type=click.IntRange(min=1),
            help="Replace a worker process after this many jobs.",
        ),
        click.option(
            "--max-memory-per-child",
            type=click.FloatRange(min=1),
            metavar="MB",
            help="Replace a worker process once its resident memory passes this.",
        ),
        click.option(
            "--retry-backoff",
            type=click.FloatRange(min=0),
            default=0.5,
            show_default=True,
            metavar="SECONDS",
            help="Base of the exponential backoff between retries of a failed job.",
        ),
        click.option(
            "--start-method",
            type=click.Choice(["spawn", "forkserver", "fork"]),
            default="spawn",
            show_default=True,
            help="How worker processes start (multiprocessing start method).",
        ),
    ]
    return apply_options(func, options)


def scheduler_option(func: Any) -> Any:
    """``--scheduler/--no-scheduler``, shared by ``run`` and ``worker`` (``consumer.scheduler``)."""
    return click.option(
        "--scheduler/--no-scheduler",
        default=None,
        help="Run a scheduler for the registry's periodic jobs (default: when it has any). "
        "Any number may run: one leads, each due time fires once.",
    )(func)


def supervisor_settings(
    options: dict[str, Any], *, jobs: str, queues: tuple[str, ...], burst: bool, logs: LogSettings
) -> SupervisorSettings:
    """Settings for the supervisor from the shared pool flags."""
    shape = shape_pool(
        PoolKind(options["pool"]),
        options["concurrency"],
        threads=options["threads"],
        processes=options["processes"],
    )
    worker = WorkerSettings(
        queues=queues,
        job_timeout_s=options["job_timeout"],
        prefetch=options["prefetch"],
        shutdown_timeout_s=options["shutdown_timeout"],
        max_jobs=options["max_jobs_per_child"],
        max_memory_mb=options["max_memory_per_child"],
        burst=burst,
        retry=RetrySettings(base_s=options["retry_backoff"]),
    )
    return SupervisorSettings(
        jobs=jobs,
        shape=shape,
        worker=worker,
        start_method=options["start_method"],
        log_level=logs.level,
        log_format=logs.format,
    )


def result_cap_option(func: Any) -> Any:
    """``--max-result-bytes``, shared by ``run`` and ``worker``."""
    return click.option(
        "--max-result-bytes",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_RESULT_BYTES,
        show_default=True,
        envvar="CONVEYOR_MAX_RESULT_BYTES",
        metavar="BYTES",
        help="Largest JSON-encoded return value stored as a job's result; a job returning "
        "more fails with a clear error and is retried, then dead-lettered, like any failure.",
    )(func)


def pool_settings(
    options: dict[str, Any],
    *,
    jobs: str,
    queues: tuple[str, ...],
    logs: LogSettings,
    burst: bool = False,
) -> SupervisorSettings:
    """The pool flags' ``SupervisorSettings``, with the result cap of ``--max-result-bytes``."""
    cap = options.pop("max_result_bytes")
    settings = supervisor_settings(options, jobs=jobs, queues=queues, burst=burst, logs=logs)
    worker = dataclasses.replace(settings.worker, max_result_bytes=cap)
    return dataclasses.replace(settings, worker=worker)
