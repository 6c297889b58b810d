"""``conveyor cron list``: the registry's periodic jobs, with their last and next runs.

The entries come from the registry (``--jobs``), what was fired from the backend's
``ScheduleStore`` (the same one the workers' schedulers use), the next due time from the
schedule and this host's clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from services.backends import open_queue, scheme_of
from services.cli.options import connect_url, connection_options
from services.errors import ConfigError
from services.loading import load_registry
from services.periodic import PeriodicSpec, schedule_group, schedule_of

COLUMNS = ("NAME", "SCHEDULE", "QUEUE", "MISSED", "LAST RUN", "NEXT RUN")


@click.group("cron")
def cron_group() -> None:
    """List the periodic jobs: schedule, queue, last and next run.

    Periodic jobs are registered with `@registry.periodic`; the workers' schedulers fire them.
    """


@cron_group.command("list")
@connection_options()
@click.option(
    "--jobs",
    envvar="CONVEYOR_JOBS",
    required=True,
    show_envvar=True,
    metavar="MODULE:ATTR",
    help="Registry whose periodic jobs to list, e.g. myapp.jobs:registry.",
)
def list_command(url: str, jobs: str, **options: Any) -> None:
    """List the periodic jobs: schedule, queue, missed-times policy, last and next run (UTC).

    LAST RUN is the newest due time fired (`-`: never); NEXT RUN the next due time after now.
    The last line names the scheduler leading now, if any. Exit codes: 0 listed, 2 bad
    configuration, 1 backend unreachable.
    """
    url = connect_url(url, options)
    if scheme_of(url) == "memory":
        raise ConfigError(
            "a memory:// queue's schedule lives inside one `conveyor run`; use a redis:// URL"
        )
    specs = load_registry(jobs).periodics()
    backend = open_queue(url)
    try:
        last = backend.last_fired([spec.name for spec in specs])
        leader = backend.leader(group=schedule_group(specs))
    finally:
        backend.close()
    now = time.time()
    rows = [row(spec, last.get(spec.name), now) for spec in specs]
    for line in table([COLUMNS, *rows]):
        click.echo(line)
    click.echo(f"leader: {leader or 'none (no scheduler runs)'}")


def row(spec: PeriodicSpec, last: float | None, now: float) -> tuple[str, ...]:
    """One entry's cells."""
    missed = spec.missed if spec.missed == "skip" else f"catch_up({spec.max_catch_up})"
    next_run = schedule_of(spec.schedule).next_after(now)
    schedule = schedule_of(spec.schedule).text
    return spec.name, schedule, spec.queue, missed, stamp(last), stamp(next_run)


def stamp(when: float | None) -> str:
    """``2026-01-01 12:00:00``, in UTC; ``-`` for never."""
    if when is None:
        return "-"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows padded into columns."""
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in rows
    ]
