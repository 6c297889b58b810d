"""``conveyor bench``: measure Conveyor on this machine, with real workers and real jobs.

Parse flags, build ``BenchSettings``, run ``consumer.benchmark``'s phases under a progress bar,
print a table (or ``--json``). With ``--redis-server auto`` it starts a throwaway redis-server
on a free port and benchmarks that instead of ``--url``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import click

from consumer.bench_report import format_table
from consumer.benchmark import HTTP_ON_MEMORY, PHASES, BenchSettings, Figure, JobKind, run_bench
from consumer.cli.bench_server import throwaway_server
from consumer.pool_shape import PoolKind
from consumer.report import PhaseBar
from services.backends import redact_url, scheme_of
from services.errors import ConfigError


@click.command("bench")
@click.option("--url", default="memory://", show_default=True, help="The backend to measure.")
@click.option(
    "--redis-server",
    metavar="auto|PATH",
    help="Start a throwaway redis-server (auto: the one on PATH) on a free port and measure "
    "it instead of --url; it keeps nothing on disk and is killed at the end.",
)
@click.option(
    "--pool",
    type=click.Choice([k.value for k in PoolKind]),
    default=PoolKind.ASYNCIO.value,
    show_default=True,
)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="threads/asyncio pools: host processes [default: number of CPUs].",
)
@click.option(
    "--job",
    type=click.Choice([k.value for k in JobKind]),
    default=JobKind.NOOP.value,
    show_default=True,
    help="What each enqueued and drained job does (incr: one Redis INCR, needs Redis).",
)
@click.option("--jobs", "-n", type=click.IntRange(min=10), default=10_000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=200.0,
    show_default=True,
    help="Offered load of the latency phase, jobs/s.",
)
@click.option("--latency-jobs", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--only",
    type=click.Choice(list(PHASES)),
    multiple=True,
    help="Run only these phases (repeatable); io and latency need drain, which starts the pool.",
)
@click.option(
    "--serve-arg",
    "serve_args",
    metavar="ARG",
    multiple=True,
    help="One more argument for the http phase's `conveyor serve` (repeatable; write "
    "--serve-arg=--durable, with the =).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def bench_command(redis_server: str | None, as_json: bool, **options: Any) -> None:
    """Measure enqueue, drain, IO, latency and CPU scaling of Conveyor on this machine.

    \b
    Phases, in order (each reports measured figures):
      enqueue  Producer.enqueue one by one and enqueue_many x1000: jobs/s; on Redis the
               memory per queued job and the Redis commands per enqueue
      http     `conveyor serve` started on the same URL (free loopback port, no access log,
               jobs checked against the bench registry): 1 job a POST, then 100 a POST,
               over 4 keep-alive connections at once (one client thread each): jobs/s;
               then the queue must hold every job. Redis only (serve refuses memory://):
               on memory:// the default run prints it as skipped and --only http exits 2.
               The jobs stay on the queue bench-<hex>-http (a throwaway --redis-server
               is gone at the end)
      drain    a pool started on that backlog (queued first, untimed, when enqueue is
               left out): start-up (spawn -> first job), jobs/s, Redis commands per job;
               incr jobs: checks the counter
      io       10 ms sleeps on every slot: jobs/s against slots / 10 ms
      latency  noop jobs at --rate jobs/s: enqueue -> start p50, p95, p99
      cpu      the same CPU-bound jobs on 1 and 2 processes, and the ratio
      pools    10 ms sleeps, -c at once in one process: a bare asyncio gather and a bare
               thread pool (no queue), then Conveyor's asyncio and threads pools of one
               process x -c slots: jobs/s each, and each pool as % of its bare baseline
    Exit codes: 0 measured, 2 bad options, 1 a phase failed (the pool died, jobs were lost,
    conveyor serve did not start or refused a job).
    """
    settings = _settings(options)
    phases, skipped = _phases(list(options["only"]), settings.url, redis_server)
    with _server(redis_server, settings) as settings:
        figures = _measure(settings, phases)
    if as_json:
        click.echo(json.dumps(_document(settings, figures, skipped), indent=2))
    else:
        click.echo(format_table(figures, skipped))


def _phases(
    only: list[str], url: str, redis_server: str | None
) -> tuple[list[str], dict[str, str]]:
    """The phases to run, and those skipped with the reason: http needs a server that
    ``conveyor serve`` can reach too; asked for by name on memory://, it is a usage error."""
    phases = only or list(PHASES)
    if "http" not in phases or redis_server is not None or scheme_of(url) != "memory":
        return phases, {}
    if only:
        raise ConfigError(f"--only http: {HTTP_ON_MEMORY.removeprefix('skipped: ')}")
    return [phase for phase in phases if phase != "http"], {"http": HTTP_ON_MEMORY}


def _settings(options: dict[str, Any]) -> BenchSettings:
    kind = PoolKind(options["pool"])
    processes = options["processes"]
    if kind is PoolKind.PROCESSES and processes is not None:
        raise ConfigError("--processes is for threads/asyncio pools; use --concurrency")
    if kind is not PoolKind.PROCESSES and processes is None:
        processes = os.cpu_count() or 1
    scheme_of(options["url"])  # an unknown scheme is a usage error, before anything starts
    return BenchSettings(
        url=options["url"],
        pool=kind,
        concurrency=options["concurrency"],
        processes=processes,
        job=JobKind(options["job"]),
        jobs=options["jobs"],
        rate=options["rate"],
        latency_jobs=options["latency_jobs"],
        serve_args=tuple(options["serve_args"]),
    )


@contextlib.contextmanager
def _server(binary: str | None, settings: BenchSettings) -> Iterator[BenchSettings]:
    """``settings`` on a throwaway redis-server when one is asked for, else as they are."""
    if binary is None:
        if settings.job is JobKind.INCR and scheme_of(settings.url) == "memory":
            raise ConfigError("--job incr needs Redis: give --url redis://... or --redis-server")
        yield settings
        return
    with throwaway_server(binary) as url:
        yield BenchSettings(**{**settings.__dict__, "url": url})


def _measure(settings: BenchSettings, phases: list[str]) -> list[Figure]:
    bar, figures = PhaseBar(phases), []
    try:
        for index, (_, found) in enumerate(run_bench(settings, phases)):
            figures += found
            bar.end()
            if index + 1 < len(phases):
                bar.begin(phases[index + 1])
    finally:
        bar.close()
    return figures


def _document(
    settings: BenchSettings, figures: list[Figure], skipped: dict[str, str]
) -> dict[str, Any]:
    """The ``--json`` output: where and how it was measured, then every figure."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {"conveyor": version("conveyor"), "python": sys.version.split()[0]},
        "settings": {
            **settings.__dict__,
            "url": redact_url(settings.url),
            "pool": settings.pool.value,
            "job": settings.job.value,
        },
        "figures": {
            figure.name: {"value": figure.value, "unit": figure.unit, "detail": figure.detail}
            for figure in figures
        },
        "skipped": skipped,
    }
