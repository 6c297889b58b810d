"""The ``conveyor`` command: parse flags, build settings, delegate. Nothing else lives here.

Flags and environment variables (``CONVEYOR_*``, through click's ``envvar=``) are read here and
only here; they become frozen settings objects passed to constructors.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from typing import Any

import click

from consumer.dead_letters_cli import dead_letters_group
from consumer.pipeline import RunSettings, run_pipeline
from consumer.pool_options import pool_options, supervisor_settings
from consumer.report import Progress, format_summary
from consumer.signals import recorded_signals
from consumer.startup import check_backend, wait_for_backend
from consumer.supervisor import Supervisor, SupervisorSettings
from producer.cli import enqueue_command, parse_kwarg
from producer.cli_options import (
    ConveyorGroup,
    connect_url,
    connection_options,
    queue_option,
    queue_options,
    queue_settings,
)
from producer.feeds import load_feed
from services import exitcodes
from services.backends import open_queue, redact_url, scheme_of
from services.errors import ConfigError
from services.loading import load_registry
from services.settings import DEFAULT_MAX_RESULT_BYTES

DEMO_JOBS = "services.demo:registry"
DEMO_FEED = "services.demo:feed"


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
    log_level: int,
    burst: bool = False,
) -> SupervisorSettings:
    """The pool flags' ``SupervisorSettings``, with the result cap of ``--max-result-bytes``."""
    cap = options.pop("max_result_bytes")
    settings = supervisor_settings(
        options, jobs=jobs, queues=queues, burst=burst, log_level=log_level
    )
    worker = dataclasses.replace(settings.worker, max_result_bytes=cap)
    return dataclasses.replace(settings, worker=worker)


@click.group(cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor", message="conveyor %(version)s")
@click.option(
    "--log-level",
    default="INFO",
    envvar="CONVEYOR_LOG_LEVEL",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """Conveyor: a fast, trustworthy task queue.

    \b
    Try it:        conveyor run                     (demo jobs, memory queue, one process tree)
    Consume:       conveyor worker --url redis://localhost:6379/0 --jobs myapp.jobs:registry
    Produce:       conveyor enqueue resize photo.jpg 640 --url redis://localhost:6379/0
    Dead letters:  conveyor dead-letters list --url redis://localhost:6379/0
    """
    level = getattr(logging, log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.obj = level


@main.command("run")
@connection_options(default_url="memory://")
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
@queue_options
@result_cap_option
@click.pass_obj
def run_command(
    log_level: int,
    /,
    url: str,
    queue: str,
    producers: int,
    feed: str,
    feed_args: tuple[str, ...],
    count: int | None,
    jobs: str,
    **options: Any,
) -> None:
    """Run producers and a consumer pool together, with progress and a summary.

    With no options: the built-in demo (CPU-bound, IO-bound and failing jobs) on the embedded
    memory queue. Exits 0 when every produced job is done or dead-lettered.
    """
    load_registry(jobs)  # fail fast in the parent with a clear message
    load_feed(feed)
    feed_options = dict(parse_kwarg(text) for text in feed_args)
    if count is not None:
        feed_options["count"] = count
    settings = RunSettings(
        supervisor=pool_settings(options, jobs=jobs, queues=(queue,), log_level=log_level),
        producers=producers,
        feed=feed,
        feed_options=feed_options,
        queue=queue,
    )
    backend = open_queue(connect_url(url, options), queue_settings(options))
    if scheme_of(url) != "memory":
        check_backend(backend)
    click.echo(
        f"conveyor run: {producers} producer(s), {settings.supervisor.shape.kind.value} "
        f"pool x{settings.supervisor.shape.concurrency}, queue {queue!r} on "
        f"{redact_url(url)}",
        err=True,
    )
    try:
        with recorded_signals() as signals:
            code, summary = run_pipeline(backend, settings, signals, Progress())
    finally:
        backend.close()
    click.echo(format_summary(summary))
    sys.exit(code)


@main.command("worker")
@connection_options()
@queue_option(multiple=True, text="Queue to consume; repeat for several, highest priority first.")
@click.option(
    "--jobs",
    envvar="CONVEYOR_JOBS",
    required=True,
    show_envvar=True,
    metavar="MODULE:ATTR",
    help="Registry of job functions, e.g. myapp.jobs:registry.",
)
@click.option("--burst", is_flag=True, help="Exit 0 once the queues are empty.")
@click.option(
    "--lease",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help="A dead worker's jobs go to another after about this long.",
)
@pool_options
@queue_options
@result_cap_option
@click.pass_obj
def worker_command(
    log_level: int,
    /,
    url: str,
    queues: tuple[str, ...],
    jobs: str,
    burst: bool,
    lease: float,
    **options: Any,
) -> None:
    """Consume jobs with a supervised pool of worker processes.

    At start the worker checks the backend: a wrong password or an ACL that denies a command
    exits 2 with one line. A Redis that cannot be reached yet is retried, logged, with backoff
    up to 30 s (like a worker started before its broker); stop it with Ctrl+C or SIGTERM.

    SIGTERM or Ctrl+C: stop fetching and let running jobs finish within --shutdown-timeout;
    a second signal hands every unfinished job back to the queue at once. SIGQUIT: that hard
    stop at once (every unfinished job goes back to the queue, none is lost: exit 0).
    Exit codes: 0 stopped cleanly, 2 bad usage or configuration, 3 a worker cannot start.
    """
    if scheme_of(url) == "memory":
        raise ConfigError(
            "the memory:// queue lives inside one process tree, so a standalone worker would "
            "see an empty queue of its own; run producers and workers together with "
            "`conveyor run`, or point both at a redis:// URL"
        )
    load_registry(jobs)  # fail fast in the parent with a clear message
    settings = pool_settings(options, jobs=jobs, queues=queues, burst=burst, log_level=log_level)
    backend = open_queue(connect_url(url, options), queue_settings(options, lease_s=lease))
    if not wait_for_backend(backend):
        sys.exit(exitcodes.OK)  # stopped by a signal before it could start
    supervisor = Supervisor(backend, settings)
    try:
        # The supervisor acts on them itself, before it reaps: children stopped by the same
        # signal (sent to the whole process group) are then not taken for crashes.
        with recorded_signals(signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) as signals:
            supervisor.start()
            while supervisor.exit_code is None:
                supervisor.run_once(0.5, signals=signals)
    finally:
        backend.close()
    sys.exit(supervisor.exit_code)


main.add_command(enqueue_command)
main.add_command(dead_letters_group)
