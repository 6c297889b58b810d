"""``conveyor run``: producers and a consumer pool together, with progress and a summary.

Parse flags, build settings, delegate to ``consumer.pipeline``. With no options it runs the
built-in demo on the embedded memory queue. On ``memory://`` the run also serves its fleet
state on a control socket (``consumer.control_socket``), so ``conveyor scale``, ``pause`` and
``resume`` reach it from another shell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from logging import WARNING
from pathlib import Path
from typing import Any, TextIO, cast

import click

from consumer.cli.fleet_options import (
    chosen_control_dir,
    control_dir_option,
    fleet_link,
    fleet_options,
    with_fleet,
)
from consumer.cli.metrics_options import metrics_options, serving_metrics
from consumer.cli.pool_options import pool_options, pool_settings, result_cap_option
from consumer.control_socket import ControlServer, socket_path
from consumer.pipeline import RunSettings, run_pipeline
from consumer.report import Progress, format_summary
from consumer.signals import recorded_signals
from consumer.sizing import RESIZE_SIGNALS
from consumer.startup import check_backend
from producer.feeds import load_feed
from services.backends import open_queue, redact_url, scheme_of
from services.cli.arguments import parse_kwarg
from services.cli.logging_options import say
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
from services.logs import LogFormat, LogLines, LogSettings
from services.protocol import FleetControl

log = logging.getLogger("conveyor.run")

DEMO_JOBS = "services.demo:registry"
DEMO_FEED = "services.demo:feed"


@click.command("run")
@connection_options(default_url="memory://")
@rq_serializer_option
@queue_option(text="Queue the feed fills and the workers consume.")
@click.option(
    "--producers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Producer processes running the feed.",
)
@click.option(
    "--feed",
    default=DEMO_FEED,
    show_default=True,
    metavar="MODULE:FUNCTION",
    help="Generator function yielding (job_name, args, kwargs) tuples.",
)
@click.option(
    "--feed-arg",
    "feed_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for the feed function (VALUE parsed as JSON if it can be).",
)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=None,
    help="How many jobs the demo feed makes (default 300); same as --feed-arg count=N.",
)
@click.option(
    "--jobs",
    default=DEMO_JOBS,
    show_default=True,
    metavar="MODULE:ATTR",
    help="Registry of job functions the workers run.",
)
@pool_options
@fleet_options
@control_dir_option
@queue_options
@result_cap_option
@metrics_options
@click.pass_obj
def run_command(
    logs: LogSettings,
    /,
    url: str,
    queue: str,
    producers: int,
    feed: str,
    feed_args: tuple[str, ...],
    count: int | None,
    jobs: str,
    control_dir: str | None,
    **options: Any,
) -> None:
    """Run producers and a consumer pool together, with progress and a summary.

    With no options: the built-in demo (CPU-bound, IO-bound and failing jobs) on the embedded
    memory queue. Exits 0 when every produced job is done or dead-lettered.

    \b
    Resize it live, like a fleet of `conveyor worker`s (its pool is one supervisor of --group):
      conveyor scale default=4 --url memory://     from another shell, same user: reaches
                                                  this run through its control socket,
                                                  <control dir>/run-<pid>.sock (printed at
                                                  start; --run PID picks one of several runs)
      conveyor pause QUEUE --url memory://         (and resume) through the same socket
      kill -TTIN <pid> / kill -TTOU <pid>          one worker process more / less
    On a redis:// URL those commands go through Redis instead, as for `conveyor worker`.
    """
    registry = load_registry(jobs)  # fail fast in the parent with a clear message
    load_feed(feed)
    feed_options = dict(parse_kwarg(text, "--feed-arg") for text in feed_args)
    if count is not None:
        feed_options["count"] = count
    supervisor = pool_settings(options, jobs=jobs, queues=(queue,), logs=logs)
    settings = RunSettings(
        supervisor=with_fleet(supervisor, options),
        producers=producers,
        feed=feed,
        feed_options=feed_options,
        queue=queue,
    )
    url = connect_url(url, options)
    backend = open_queue(url, queue_settings(options))
    if scheme_of(url) != "memory":
        check_backend(backend)
    say(
        f"conveyor run: {producers} producer(s), {settings.supervisor.shape.kind.value} "
        f"pool x{settings.supervisor.shape.concurrency}, queue {queue!r} on "
        f"{redact_url(url)}"
    )
    serving = serving_metrics(
        options, url=url, queues=(queue,), registry=registry, inspector=backend
    )
    link = fleet_link(backend)
    control = Path(chosen_control_dir(control_dir)) if scheme_of(url) == "memory" else None
    try:
        with (
            serving as metrics,
            serving_control(link.fleet, control),
            recorded_signals(signal.SIGTERM, signal.SIGINT, *RESIZE_SIGNALS) as signals,
        ):
            code, summary = run_pipeline(
                backend, settings, signals, progress(logs), metrics, fleet=link
            )
    finally:
        backend.close()
    click.echo(format_summary(summary))
    sys.exit(code)


@contextlib.contextmanager
def serving_control(fleet: FleetControl, directory: Path | None) -> Iterator[None]:
    """Serve ``fleet`` on this run's control socket in ``directory`` (None: no socket). A
    socket that cannot be made costs the run its remote control, not the run: a warning."""
    if directory is None:
        yield
        return
    server = ControlServer(fleet, socket_path(directory, os.getpid()))
    try:
        server.start()
    except (ConfigError, OSError) as exc:
        say(f"no control socket (conveyor scale cannot reach this run): {exc}", level=WARNING)
        yield
        return
    say(f"control socket: {server.path} (conveyor scale GROUP=N --url memory://)")
    try:
        yield
    finally:
        server.close()


def progress(logs: LogSettings) -> Progress:
    """A bar on a terminal, progress lines elsewhere; log records when logging JSON."""
    if logs.format is LogFormat.JSON:
        return Progress(cast(TextIO, LogLines(log)))
    return Progress()
