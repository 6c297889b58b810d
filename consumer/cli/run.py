"""``conveyor run``: producers and a consumer pool together, with progress and a summary.

Parse flags, build settings, delegate to ``consumer.pipeline``. With no options it runs the
built-in demo on the embedded memory queue.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import click

from consumer.cli.metrics_options import metrics_options, serving_metrics
from consumer.cli.pool_options import pool_options, pool_settings, result_cap_option
from consumer.pipeline import RunSettings, run_pipeline
from consumer.report import Progress, format_summary
from consumer.signals import recorded_signals
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
)
from services.loading import load_registry
from services.logs import LogFormat, LogLines, LogSettings

log = logging.getLogger("conveyor.run")

DEMO_JOBS = "services.demo:registry"
DEMO_FEED = "services.demo:feed"


@click.command("run")
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
    **options: Any,
) -> None:
    """Run producers and a consumer pool together, with progress and a summary.

    With no options: the built-in demo (CPU-bound, IO-bound and failing jobs) on the embedded
    memory queue. Exits 0 when every produced job is done or dead-lettered.
    """
    registry = load_registry(jobs)  # fail fast in the parent with a clear message
    load_feed(feed)
    feed_options = dict(parse_kwarg(text) for text in feed_args)
    if count is not None:
        feed_options["count"] = count
    settings = RunSettings(
        supervisor=pool_settings(options, jobs=jobs, queues=(queue,), logs=logs),
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
    try:
        with serving as metrics, recorded_signals() as signals:
            code, summary = run_pipeline(backend, settings, signals, progress(logs), metrics)
    finally:
        backend.close()
    click.echo(format_summary(summary))
    sys.exit(code)


def progress(logs: LogSettings) -> Progress:
    """A bar on a terminal, progress lines elsewhere; log records when logging JSON."""
    if logs.format is LogFormat.JSON:
        return Progress(cast(TextIO, LogLines(log)))
    return Progress()
