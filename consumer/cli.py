"""The ``conveyor`` command: parse flags, build settings, delegate. Nothing else lives here.

Flags and environment variables (``CONVEYOR_*``, through click's ``envvar=``) are read here and
only here; they become frozen settings objects passed to constructors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from consumer.embedded import RunSettings, run_pipeline
from consumer.pool_options import pool_options, supervisor_settings
from consumer.report import Progress, format_summary
from consumer.signals import recorded_signals
from consumer.supervisor import Supervisor
from producer.cli import (
    ConveyorGroup,
    enqueue_command,
    parse_kwarg,
    queue_options,
    queue_settings,
    secret_url,
)
from producer.feeds import load_feed
from services.backends import open_queue, redact_url, scheme_of
from services.errors import ConfigError
from services.loading import load_registry

DEMO_JOBS = "services.demo:registry"
DEMO_FEED = "services.demo:feed"


@click.group(cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--url",
    default="memory://",
    envvar="CONVEYOR_URL",
    show_default=True,
    show_envvar=True,
    help="Queue URL; the default keeps everything in this process tree.",
)
@click.option("--queue", default="default", show_default=True, help="Queue name.")
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
        supervisor=supervisor_settings(
            options, jobs=jobs, queues=(queue,), burst=False, log_level=log_level
        ),
        producers=producers,
        feed=feed,
        feed_options=feed_options,
        queue=queue,
    )
    backend = open_queue(secret_url(url, options), queue_settings(options))
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
@click.option(
    "--url",
    envvar="CONVEYOR_URL",
    required=True,
    show_envvar=True,
    help="Queue URL: redis://[user:password@]host:port/db, rediss://..., unix://path",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    default=("default",),
    show_default=True,
    envvar="CONVEYOR_QUEUE",
    help="Queue to consume; repeat for several, highest priority first.",
)
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

    SIGTERM or Ctrl+C: stop fetching and let running jobs finish within --shutdown-timeout;
    a second signal hands every unfinished job back to the queue at once.
    Exit codes: 0 stopped cleanly, 2 bad usage or configuration, 3 a worker cannot start.
    """
    if scheme_of(url) == "memory":
        raise ConfigError(
            "the memory:// queue lives inside one process tree, so a standalone worker would "
            "see an empty queue of its own; run producers and workers together with "
            "`conveyor run`, or point both at a redis:// URL"
        )
    load_registry(jobs)  # fail fast in the parent with a clear message
    settings = supervisor_settings(
        options, jobs=jobs, queues=queues, burst=burst, log_level=log_level
    )
    backend = open_queue(secret_url(url, options), queue_settings(options, lease_s=lease))
    supervisor = Supervisor(backend, settings)
    try:
        with recorded_signals() as signals:
            supervisor.start()
            while supervisor.exit_code is None:
                supervisor.run_once(0.5, wake_fds=(signals.wakeup_fd or -1,))
                for _ in signals.take():
                    supervisor.stop()
    finally:
        backend.close()
    sys.exit(supervisor.exit_code)


@main.group("dead-letters")
def dead_letters_group() -> None:
    """List dead letters, or put them back on their queue."""


@dead_letters_group.command("list")
@click.option("--url", envvar="CONVEYOR_URL", required=True, show_envvar=True)
@click.option("--queue", default="default", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def dead_letters_list(url: str, queue: str, limit: int) -> None:
    """Show the newest dead letters: job id, when, and the reason's last line."""
    backend = open_queue(url)
    try:
        letters = backend.dead_letters(queue, limit=limit)
    finally:
        backend.close()
    for letter in letters:
        last = letter.reason.strip().splitlines()[-1] if letter.reason.strip() else ""
        click.echo(f"{letter.job_id}  {letter.failed_at:.0f}  {last}")
    click.echo(f"{len(letters)} dead letter(s) shown", err=True)


@dead_letters_group.command("requeue")
@click.option("--url", envvar="CONVEYOR_URL", required=True, show_envvar=True)
@click.option("--queue", default="default", show_default=True)
@click.argument("job_ids", nargs=-1)
def dead_letters_requeue(url: str, queue: str, job_ids: tuple[str, ...]) -> None:
    """Put dead letters (all, or the JOB_IDS given) back on their queue."""
    backend = open_queue(url)
    try:
        count = backend.requeue_dead(queue, list(job_ids) or None)
    finally:
        backend.close()
    click.echo(f"requeued {count} job(s)")


main.add_command(enqueue_command)
