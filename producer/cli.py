"""``conveyor enqueue``: put one job on a queue from the shell and print its id."""

from __future__ import annotations

import json
from typing import Any

import click

from producer.producer import Producer
from services import exitcodes
from services.backends import open_queue, scheme_of, with_password
from services.errors import ConfigError, ConveyorError
from services.loading import load_registry
from services.settings import QueueSettings


def parse_arg(text: str) -> Any:
    """An ARG that parses as JSON is that value (``3``, ``[1,2]``, ``"x"``); else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kwarg(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed like an ARG."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="--kwarg")
    return key, parse_arg(value)


def exit_on_conveyor_error(ctx: click.Context, error: ConveyorError) -> None:
    """One clear line and an exit code instead of a traceback: 2 for configuration, else 1."""
    click.echo(f"error: {error}", err=True)
    ctx.exit(exitcodes.USAGE if isinstance(error, ConfigError) else exitcodes.ERROR)


class ConveyorCommand(click.Command):
    """A command that reports Conveyor's own errors as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            exit_on_conveyor_error(ctx, exc)


class ConveyorGroup(click.Group):
    """A group whose commands report Conveyor's own errors as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            exit_on_conveyor_error(ctx, exc)


def queue_options(func: Any) -> Any:
    """Flags that shape how the backend keeps jobs, shared by every command that opens one."""
    options = [
        click.option(
            "--max-depth",
            type=click.IntRange(min=1),
            default=None,
            help="Bounded queue: a full queue makes enqueue wait, then fail.",
        ),
        click.option(
            "--put-timeout",
            type=click.FloatRange(min=0),
            default=5.0,
            show_default=True,
            metavar="SECONDS",
            help="How long enqueue waits for room in a full bounded queue.",
        ),
        click.option(
            "--result-ttl",
            type=click.FloatRange(min=0),
            default=3600.0,
            show_default=True,
            metavar="SECONDS",
            help="How long results and job status stay readable (0: keep none).",
        ),
        click.option(
            "--password-file",
            type=click.File("r"),
            default=None,
            envvar="CONVEYOR_REDIS_PASSWORD_FILE",
            show_envvar=True,
            help="Read the Redis password from this file instead of the URL, so it never "
            "shows in `ps` (the CONVEYOR_REDIS_PASSWORD variable works too).",
        ),
        click.option("--redis-password", hidden=True, envvar="CONVEYOR_REDIS_PASSWORD"),
        click.option(
            "--max-redeliveries",
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            help="A job whose worker died this many times is quarantined.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def secret_url(url: str, options: dict[str, Any]) -> str:
    """``url`` with the password from ``--password-file``/``CONVEYOR_REDIS_PASSWORD`` if given."""
    password_file, password = options.pop("password_file"), options.pop("redis_password")
    if password_file is not None:
        password = password_file.read().strip()
    return with_password(url, password) if password else url


def queue_settings(options: dict[str, Any], **more: Any) -> QueueSettings:
    """``QueueSettings`` from the flags of ``queue_options`` (popped from ``options``)."""
    return QueueSettings(
        max_depth=options.pop("max_depth"),
        put_timeout_s=options.pop("put_timeout"),
        result_ttl_s=options.pop("result_ttl"),
        max_redeliveries=options.pop("max_redeliveries"),
        **more,
    )


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
@click.option(
    "--url",
    envvar="CONVEYOR_URL",
    required=True,
    show_envvar=True,
    help="Queue URL: redis://[user:password@]host:port/db, rediss://..., unix://...",
)
@click.option(
    "--queue",
    default="default",
    envvar="CONVEYOR_QUEUE",
    show_default=True,
    show_envvar=True,
    help="Queue to put the job on.",
)
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
@queue_options
def enqueue_command(
    name: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    url: str,
    queue: str,
    jobs: str | None,
    delay: float,
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
    backend = open_queue(secret_url(url, options), queue_settings(options))
    try:
        producer = Producer(backend, registry=registry, name=queue)
        call_kwargs = dict(parse_kwarg(text) for text in kwargs)
        call_args = [parse_arg(text) for text in args]
        if delay > 0:
            job = producer.enqueue_in(delay, name, *call_args, **call_kwargs)
        else:
            job = producer.enqueue(name, *call_args, **call_kwargs)
    finally:
        backend.close()
    click.echo(job.id)
