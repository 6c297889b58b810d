"""``conveyor status``: the queues, the groups and the supervisors of a fleet, in one look.

The picture is ``services.fleet_view``'s (the same as ``GET /v1/fleet``); this module only
opens the backend, prints it as tables (or ``--json``) and, with ``--watch``, clears the
screen and prints it again every ``--interval`` seconds until Ctrl+C (exit 0).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from consumer.cli.fleet_access import fleet_access_options, opened_fleet
from services.backends import open_queue, scheme_of
from services.cli.options import connect_url, rq_serializer_option
from services.fleet_view import StatusSource, fleet_view
from services.protocol import FleetControl
from services.protocol.inspection import QueueGauges

QUEUE_COLUMNS = ("queue", "waiting", "delayed", "in flight", "dead", "jobs/s", "oldest", "paused")
GROUP_COLUMNS = ("group", "desired", "alive", "autoscale", "last decision")
SUPERVISOR_COLUMNS = ("supervisor", "host", "pid", "group", "pool", "procs", "running", "done")


@contextlib.contextmanager
def opened_sources(
    url: str, options: dict[str, Any]
) -> Iterator[tuple[FleetControl, StatusSource | None]]:
    """The fleet and the queues ``url`` names; on memory:// the fleet of a running
    ``conveyor run`` (its control socket) and no queues (they live in that process)."""
    if scheme_of(url) == "memory":
        with opened_fleet(url, options) as fleet:
            yield fleet, None
        return
    options.pop("run_pid"), options.pop("control_dir")
    backend = open_queue(connect_url(url, options))
    try:
        yield backend.fleet(), backend if isinstance(backend, QueueGauges) else None
    finally:
        backend.close()


def table(columns: Sequence[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(columns), *rows]
    ]


def age(seconds: float | None) -> str:
    """``-``, ``42s``, ``3m05s``, ``2h07m``."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def autoscale_text(settings: dict[str, Any] | None) -> str:
    """``2..8 per 10`` (min..max, backlog per worker), or ``off``."""
    if settings is None:
        return "off"
    return f"{settings['minimum']}..{settings['maximum']} per {settings['backlog_per_worker']}"


def render(view: dict[str, Any]) -> str:
    """The picture as three tables (a lost supervisor's line says where its jobs went)."""
    queues = [
        [q["name"], str(q["waiting"]), str(q["delayed"]), str(q["in_flight"]), str(q["dead"]),
         "-" if q["jobs_per_s"] is None else f"{q['jobs_per_s']:.1f}",
         age(q["oldest_waiting_s"]), "yes" if q["paused"] else "no"]
        for q in view["queues"]
    ]  # fmt: skip
    groups = [
        [g["name"], "-" if g["desired"] is None else str(g["desired"]), str(g["alive"]),
         autoscale_text(g["autoscale"]), g["reason"] or "-"]
        for g in view["groups"]
    ]  # fmt: skip
    supervisors = [
        [s["id"], s["host"], str(s["pid"]), s["group"], s["pool"],
         f"{s['processes_alive']}/{s['processes_desired']}", str(s["jobs_running"]),
         str(s["jobs_done"]) + (f"  ({s['note']})" if s["lost"] else "")]
        for s in view["supervisors"]
    ]  # fmt: skip
    return "\n".join(
        [*table(QUEUE_COLUMNS, queues), "", *table(GROUP_COLUMNS, groups), "",
         *table(SUPERVISOR_COLUMNS, supervisors)]
    )  # fmt: skip


def show(view: dict[str, Any], as_json: bool) -> None:
    """Print the picture once."""
    if as_json:
        click.echo(json.dumps(view, sort_keys=True))
    else:
        click.echo(render(view))


@click.command("status")
@fleet_access_options
@rq_serializer_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object (stable keys).")
@click.option("--watch", is_flag=True, help="Clear and redraw until Ctrl+C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
def status_command(url: str, as_json: bool, watch: bool, interval: float, **options: Any) -> None:
    """Show queues, groups and supervisors of the fleet: what waits, what runs, who is lost.

    Queues: waiting, delayed, in flight, dead (total), jobs/s over the last minute (known from
    the second look on: an earlier look leaves the sample), age of the oldest waiting job,
    paused. Groups: desired against alive processes, autoscale bounds, the last decision's
    reason. Supervisors: host, pid, group, pool, processes alive/desired, jobs running and
    done; a lost one's jobs are recovered by the lease machinery. Exit codes: 0 shown (also
    on Ctrl+C with --watch), 1 backend unreachable, 2 bad input.
    """
    with opened_sources(url, options) as (fleet, source):
        if not watch:
            show(fleet_view(fleet, source), as_json)
            return
        try:
            while True:
                view = fleet_view(fleet, source)  # read before clearing: no blank screen
                click.clear()  # a no-op unless stdout is a terminal
                if not as_json:
                    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                    click.echo(f"conveyor status  {stamp}  every {interval:g} s, Ctrl+C stops")
                show(view, as_json)
                time.sleep(interval)
        except KeyboardInterrupt:
            return
