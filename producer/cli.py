"""``conveyor enqueue``: put one job on a queue from the shell and print its id."""

from __future__ import annotations

from typing import Any

import click

from producer.producer import Producer
from services.backends import open_queue, scheme_of
from services.cli.arguments import parse_arg, parse_kwarg
from services.cli.command import ConveyorCommand
from services.cli.options import (
    connect_url,
    connection_options,
    queue_option,
    queue_options,
    queue_settings,
    rq_serializer_option,
)
from services.errors import ConfigError
from services.loading import load_registry


@click.command("enqueue", cls=ConveyorCommand)
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option(
    "--kwarg",
    "kwargs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A keyword argument; VALUE is parsed like ARG. Repeatable.",
)
@connection_options()
@rq_serializer_option
@queue_option(text="Queue to put the job on.")
@click.option(
    "--jobs",
    envvar="CONVEYOR_JOBS",
    show_envvar=True,
    metavar="MODULE:ATTR",
    help="Registry to check NAME and the arguments against before enqueueing.",
)
@click.option(
    "--delay",
    type=float,
    default=0.0,
    metavar="SECONDS",
    help="Make the job runnable only after this many seconds.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop the job after this many seconds of running, whatever the registry's timeout= "
    "or the worker's --job-timeout (on rq+redis://: RQ's job_timeout, whole seconds).",
)
@click.option(
    "--job-id",
    default=None,
    metavar="ID",
    help="Give the job this id (1-128 characters from A-Z a-z 0-9 . _ - :). A job with this "
    "id that is queued, scheduled, running or finished within --result-ttl makes this a "
    "no-op, so a script may safely retry the same command.",
)
@click.option(
    "--unique-key",
    default=None,
    metavar="KEY",
    help="Make the job unique: while a job put with KEY on the queue is queued, scheduled, "
    "running or waiting for a retry, store nothing and print that job's id. (A job registered "
    "unique is unique by its name and arguments without it, given --jobs.)",
)
@queue_options
def enqueue_command(
    name: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    url: str,
    queue: str,
    jobs: str | None,
    delay: float,
    timeout_s: float | None,
    job_id: str | None,
    unique_key: str | None,
    **options: Any,
) -> None:
    """Put job NAME with ARGs on a queue and print the job id.

    Each ARG that parses as JSON is passed as that value, otherwise as a string:
    `conveyor enqueue resize photo.jpg 640` calls resize("photo.jpg", 640).
    """
    if scheme_of(url) == "memory":
        raise ConfigError(
            "a memory:// queue lives inside one `conveyor run` process tree, so a separate "
            "`conveyor enqueue` cannot reach it; use `conveyor run --feed MODULE:FUNCTION`, "
            "or a redis:// URL shared by producers and workers"
        )
    registry = load_registry(jobs) if jobs else None
    backend = open_queue(connect_url(url, options), queue_settings(options))
    try:
        producer = Producer(backend, registry=registry, name=queue)
        call_kwargs = dict(parse_kwarg(text) for text in kwargs)
        call_args = [parse_arg(text) for text in args]
        ids: dict[str, Any] = {"job_id": job_id, "unique_key": unique_key, "timeout_s": timeout_s}
        if delay > 0:
            job = producer.enqueue_in(delay, name, *call_args, **ids, **call_kwargs)
        else:
            job = producer.enqueue(name, *call_args, **ids, **call_kwargs)
    finally:
        backend.close()
    click.echo(job.id)
