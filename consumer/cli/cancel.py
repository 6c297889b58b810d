"""``conveyor cancel JOB_ID...`` and ``conveyor abort JOB_ID...``: end jobs by hand.

``cancel`` ends jobs that wait (queued, scheduled, or waiting for a retry): they never run.
``abort`` does that too, and asks the worker running a job to stop it (``QueueAdmin.abort``;
the worker side is ``consumer.aborting``). Each id gets one line on stdout saying what became of
it; the exit code is 0 when every job was ended, 1 when some could not be (running, for
``cancel``; finished or unknown: too late), 2 for bad input or configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from services import exitcodes
from services.backends import open_queue, scheme_of
from services.cli.options import connect_url, connection_options, rq_serializer_option
from services.errors import ConfigError
from services.names import check_job_id
from services.protocol import Cancellation, QueueAdmin


def _checked_ids(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return tuple(check_job_id(job_id) for job_id in value)


def describe(outcome: Cancellation) -> str:
    """One line: what ``cancel`` or ``abort`` did to the job, or why it could not."""
    job_id, status = outcome.job_id, outcome.status
    if outcome.cancelled:
        if status is not None and status.status == "running":
            return f"{job_id}: abort requested (running; its worker stops it within a second)"
        return f"{job_id}: cancelled (it will not run)"
    if status is None:
        return f"{job_id}: not found (never put, or its status expired)"
    if status.status == "running":
        return f"{job_id}: running, not cancelled (`conveyor abort` stops a running job)"
    error = f": {status.error.strip().splitlines()[-1]}" if status.error else ""
    return f"{job_id}: too late, already {status.status}{error}"


def end_jobs(
    url: str, job_ids: tuple[str, ...], act: Callable[[QueueAdmin, str], Cancellation]
) -> None:
    """Apply ``act`` to each of ``job_ids``, print each outcome, exit 1 if one was not ended."""
    if scheme_of(url) == "memory":
        raise ConfigError(
            "a memory:// queue lives inside the process that runs it; cancel its jobs "
            "through that process, or use a redis:// URL"
        )
    backend = open_queue(url)
    try:
        outcomes = [act(backend, job_id) for job_id in dict.fromkeys(job_ids)]
    finally:
        backend.close()
    for outcome in outcomes:
        click.echo(describe(outcome))
    if not all(outcome.cancelled for outcome in outcomes):
        sys.exit(exitcodes.ERROR)


@click.command("cancel")
@connection_options()
@rq_serializer_option
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...", callback=_checked_ids)
def cancel_command(url: str, job_ids: tuple[str, ...], **options: Any) -> None:
    """Cancel jobs that wait (queued, scheduled, or waiting for a retry): they never run.

    A cancelled job ends dead with the error 'cancelled'. Running, finished and unknown jobs
    are left alone. Exit codes: 0 all cancelled, 1 some could not be, 2 bad input.
    """
    end_jobs(connect_url(url, options), job_ids, lambda admin, job_id: admin.cancel(job_id))


@click.command("abort")
@connection_options()
@rq_serializer_option
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...", callback=_checked_ids)
def abort_command(url: str, job_ids: tuple[str, ...], **options: Any) -> None:
    """Stop jobs: cancel those that wait, and abort those that run.

    A running job is stopped by its worker within about a second (an async job is cancelled,
    any other by replacing its worker process) and ends dead, 'aborted ...', never retried.
    Exit codes: 0 all cancelled or aborted, 1 some were finished or unknown (too late),
    2 bad input.
    """
    end_jobs(connect_url(url, options), job_ids, lambda admin, job_id: admin.abort(job_id))
