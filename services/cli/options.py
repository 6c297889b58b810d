"""The flags every ``conveyor`` command that opens a queue shares, and the settings they become.

One definition per flag, so ``run``, ``worker``, ``enqueue`` and ``dead-letters list|requeue``
accept the same connection options with the same environment variables:

* ``connection_options``: ``--url`` (``CONVEYOR_URL``), ``--password-file``
  (``CONVEYOR_REDIS_PASSWORD_FILE``) and the ``CONVEYOR_REDIS_PASSWORD`` variable;
* ``queue_option``: ``--queue`` (``CONVEYOR_QUEUE``), checked against ``services.names``;
* ``queue_options``: how the backend keeps jobs (bounds, result TTL, poison limit);
* ``rq_serializer_option``: ``--rq-serializer`` (``CONVEYOR_RQ_SERIALIZER``), for the commands
  that read or write RQ jobs; ``connect_url`` folds it into the ``rq+redis://`` URL.

A flag whose value is wrong raises ``ConfigError``; the commands of ``services.cli.command``
show it as one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from services.backends import with_password, with_rq_serializer
from services.errors import ConfigError
from services.names import check_queue_name
from services.settings import QueueSettings

URL_HELP = (
    "Queue URL: redis://[user@]host:port/db, rediss://... (TLS), unix:///path?db=N, "
    "redis+cluster://host:port[,host:port...] (Redis Cluster), "
    "redis+sentinel://host:port[,host:port...]/service[/db] (Sentinel). Query "
    "options that would weaken the backend's own settings (ssl_cert_reqs, socket timeouts, "
    "retries, ...) are refused; allowed: db, ssl_ca_certs, ssl_ca_path, ssl_certfile, "
    "ssl_keyfile, client_name. Put the password in --password-file or CONVEYOR_REDIS_PASSWORD, "
    "not here: `ps` shows command lines."
)


def apply_options(func: Any, options: list[Callable[[Any], Any]]) -> Any:
    """Decorate ``func`` with click ``options``, the first listed shown first in ``--help``."""
    for option in reversed(options):
        func = option(func)
    return func


def connection_options(default_url: str | None = None) -> Callable[[Any], Any]:
    """``--url``, ``--password-file`` and ``CONVEYOR_REDIS_PASSWORD``; see ``connect_url``."""
    # Click 8.3 takes an explicit ``default=None`` as a value that satisfies ``required``: a
    # required --url gets no default at all.
    url_default: dict[str, Any] = (
        {"required": True}
        if default_url is None
        else {"default": default_url, "show_default": True}
    )
    return lambda func: apply_options(
        func,
        [
            click.option(
                "--url", envvar="CONVEYOR_URL", show_envvar=True, help=URL_HELP, **url_default
            ),
            click.option(
                "--password-file",
                type=click.File("r"),
                default=None,
                envvar="CONVEYOR_REDIS_PASSWORD_FILE",
                show_envvar=True,
                help="Read the Redis password from this file, so it never shows in `ps` "
                "(or set the CONVEYOR_REDIS_PASSWORD variable).",
            ),
            click.option("--redis-password", hidden=True, envvar="CONVEYOR_REDIS_PASSWORD"),
        ],
    )


RQ_SERIALIZER_HELP = (
    "rq+redis:// URLs only: how RQ jobs are read and written (default: the URL's "
    "?serializer=, else json). pickle is RQ's own default, and reading a pickled job runs code "
    "chosen by whoever wrote the payload: opt in only while every producer that can reach this "
    "Redis is trusted."
)

rq_serializer_option = click.option(
    "--rq-serializer",
    type=click.Choice(["json", "pickle"]),
    default=None,
    envvar="CONVEYOR_RQ_SERIALIZER",
    show_envvar=True,
    help=RQ_SERIALIZER_HELP,
)
"""``--rq-serializer``; ``connect_url`` applies it (a non-RQ URL is a ``ConfigError``)."""


def _checked_queues(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, tuple):
        if not value:
            raise ConfigError("give at least one --queue")
        return tuple(check_queue_name(name) for name in value)
    return check_queue_name(value)


def queue_option(*, multiple: bool = False, text: str = "Queue name.") -> Callable[[Any], Any]:
    """``--queue`` (``CONVEYOR_QUEUE``; space-separated when ``multiple``), names checked."""
    return click.option(
        "--queue",
        "queues" if multiple else "queue",
        multiple=multiple,
        default=("default",) if multiple else "default",
        show_default=True,
        envvar="CONVEYOR_QUEUE",
        show_envvar=True,
        callback=_checked_queues,
        help=f"{text} Names: 1-128 characters from A-Z a-z 0-9 . _ - :",
    )


def connect_url(url: str, options: dict[str, Any]) -> str:
    """``url`` with the password from ``--password-file``/``CONVEYOR_REDIS_PASSWORD`` if given,
    and the serializer of ``--rq-serializer`` if the command has it and it was given.

    Pops these options from ``options``.

    Raises:
        ConfigError: ``--rq-serializer`` with a URL that is not ``rq+redis://``.
    """
    password_file, password = options.pop("password_file"), options.pop("redis_password")
    serializer = options.pop("rq_serializer", None)
    if serializer is not None:
        url = with_rq_serializer(url, serializer)
    if password_file is not None:
        password = password_file.read().strip()
    return with_password(url, password) if password else url


def queue_options(func: Any) -> Any:
    """Flags that shape how the backend keeps jobs, for the commands that put or run them."""
    return apply_options(
        func,
        [
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
                "--max-redeliveries",
                type=click.IntRange(min=1),
                default=3,
                show_default=True,
                help="A job whose worker died this many times is quarantined.",
            ),
            click.option(
                "--durable",
                "durable_replicas",
                flag_value=1,
                type=int,
                default=None,
                help="Redis with replicas: confirm a put or an ack only once a replica has it "
                "(Redis WAIT), so a failover loses nothing acknowledged. Slower: each put and "
                "ack waits for a replica's round trip. Same as --durable-replicas 1.",
            ),
            click.option(
                "--durable-replicas",
                "durable_count",
                type=click.IntRange(min=0),
                default=None,
                envvar="CONVEYOR_DURABLE_REPLICAS",
                show_envvar=True,
                metavar="N",
                help="Like --durable, but wait for N replicas (0: off, the default).",
            ),
            click.option(
                "--durable-timeout",
                type=click.FloatRange(min=0.001),
                default=2.0,
                show_default=True,
                metavar="SECONDS",
                help="How long a durable put or ack waits for its replicas; past it the put "
                "fails as unconfirmed (putting it again is safe).",
            ),
        ],
    )


def queue_settings(options: dict[str, Any], **more: Any) -> QueueSettings:
    """``QueueSettings`` from the flags of ``queue_options`` (popped from ``options``)."""
    flag, count = options.pop("durable_replicas"), options.pop("durable_count")
    return QueueSettings(
        max_depth=options.pop("max_depth"),
        put_timeout_s=options.pop("put_timeout"),
        result_ttl_s=options.pop("result_ttl"),
        max_redeliveries=options.pop("max_redeliveries"),
        durable_replicas=count if count is not None else (flag or 0),
        durable_timeout_s=options.pop("durable_timeout"),
        **more,
    )
