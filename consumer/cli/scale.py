"""``conveyor scale``: set a group's total of worker processes across the fleet, or autoscale it.

Parse, write the desired state (``FleetControl.set_desired``), and say what it means now: the
version stored, and how the group's live supervisors split the total (``consumer.fleet_split``,
the same split they compute), or why they cannot run it all.
"""

from __future__ import annotations

from typing import Any

import click

from consumer.cli.fleet_access import fleet_access_options, opened_fleet, operator
from consumer.fleet_split import split
from services.errors import ConfigError
from services.names import check_group_name
from services.protocol import AutoscaleSettings, DesiredState, FleetControl, SupervisorRecord

AUTO_FLAGS = ("minimum", "maximum", "backlog_per_worker")


@click.command("scale")
@fleet_access_options
@click.argument("targets", nargs=-1, required=True, metavar="GROUP=N... | GROUP --auto ...")
@click.option("--auto", is_flag=True, help="Autoscale GROUP on its backlog (needs the 3 below).")
@click.option("--min", "minimum", type=click.IntRange(min=0), help="--auto: fewest processes.")
@click.option("--max", "maximum", type=click.IntRange(min=1), help="--auto: most processes.")
@click.option(
    "--backlog-per-worker",
    type=click.IntRange(min=1),
    help="--auto: waiting jobs per worker process (KEDA's listLength).",
)
@click.option(
    "--stabilization",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="--auto: shrink only after this long of a lower backlog (growth is at once).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="--auto: shrink only by more than this fraction of the current total.",
)
def scale_command(url: str, targets: tuple[str, ...], auto: bool, **options: Any) -> None:
    """Set how many worker processes a group runs across the fleet, or autoscale it.

    \b
      conveyor scale emails=6               6 worker processes in group emails, in total
      conveyor scale emails=6 reports=2     several groups at once
      conveyor scale emails=0               none: its supervisors stay up, idle
      conveyor scale emails --auto --min 1 --max 20 --backlog-per-worker 100
                                            ceil(waiting jobs / 100), within [1, 20]

    The total is stored in the backend (versioned, with who set it and when) and outlives
    restarts. The live `conveyor worker --group GROUP` supervisors split it between them, in
    id order, each within its --max-processes, and follow within about a second; a shrink
    retires idle processes first, and a busy one finishes its job (or hands it back at its
    --shutdown-timeout): nothing is lost or run twice. GROUP=N turns autoscale off.

    --auto: the group's first supervisor (by id) sets the total every second to
    ceil(backlog / --backlog-per-worker) within [--min, --max], the backlog being the jobs
    waiting on the group's unpaused queues; it grows at once and shrinks only after
    --stabilization seconds of lower backlog, by more than --tolerance.

    On memory:// this reaches a running `conveyor run` through its control socket
    (--run PID picks one of several). Exit codes: 0 stored, 2 bad input, 1 backend (or run)
    unreachable.
    """
    bounds = auto_bounds(targets, options) if auto else None
    if bounds is None and any(options[name] is not None for name in AUTO_FLAGS):
        raise ConfigError("--min, --max and --backlog-per-worker go with --auto")
    wanted = parse_targets(targets) if bounds is None else {}
    for name in (*AUTO_FLAGS, "stabilization", "tolerance"):
        options.pop(name)
    with opened_fleet(url, options) as fleet:
        if bounds is not None:
            states = [start_autoscale(fleet, targets[0], bounds)]
        else:
            states = [set_total(fleet, name, count) for name, count in wanted.items()]
        for state in states:
            click.echo("\n".join(describe(fleet, state)))


def parse_targets(targets: tuple[str, ...]) -> dict[str, int]:
    """``GROUP=N`` words as {group: N}; ConfigError (exit 2) for anything else."""
    wanted: dict[str, int] = {}
    for text in targets:
        group, sep, count = text.partition("=")
        if not sep:
            raise ConfigError(f"{text!r}: say GROUP=N (e.g. {text}=4), or GROUP --auto ...")
        check_group_name(group)
        if not count.isdigit():
            raise ConfigError(f"{text!r}: N must be a whole number of worker processes, 0 or more")
        if group in wanted:
            raise ConfigError(f"group {group!r} is given twice")
        wanted[group] = int(count)
    return wanted


def auto_bounds(targets: tuple[str, ...], options: dict[str, Any]) -> AutoscaleSettings:
    """The bounds of ``--auto`` for its one GROUP; ConfigError when they do not make sense."""
    if len(targets) != 1 or "=" in targets[0]:
        raise ConfigError("--auto takes one GROUP, without =N")
    check_group_name(targets[0])
    missing = [name for name in AUTO_FLAGS if options[name] is None]
    if missing:
        raise ConfigError("--auto needs --min, --max and --backlog-per-worker")
    try:
        return AutoscaleSettings(
            minimum=options["minimum"],
            maximum=options["maximum"],
            backlog_per_worker=options["backlog_per_worker"],
            stabilization_s=options["stabilization"],
            tolerance=options["tolerance"],
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def set_total(fleet: FleetControl, group: str, count: int) -> DesiredState:
    """Store ``count`` as ``group``'s total, autoscale off."""
    state = fleet.set_desired(group, count, set_by=operator())
    assert state is not None  # no if_version: always stored
    return state


def start_autoscale(fleet: FleetControl, group: str, bounds: AutoscaleSettings) -> DesiredState:
    """Turn autoscale on, starting from the group's total (or what it runs) within the bounds."""
    desired = fleet.desired(group)
    if desired is not None:
        now = desired.processes
    else:
        now = sum(r.processes_desired for r in fleet.supervisors() if _live_in(r, group))
    start = min(max(now, bounds.minimum), bounds.maximum)
    reason = f"autoscale turned on at {start} (was {now})"
    state = fleet.set_desired(group, start, set_by=operator(), autoscale=bounds, reason=reason)
    assert state is not None
    return state


def describe(fleet: FleetControl, state: DesiredState) -> list[str]:
    """What the stored state means: its version, and the split between the live supervisors."""
    lines = [
        f"group {state.group}: {state.processes} worker process(es), "
        f"version {state.version}, set by {state.set_by}"
    ]
    if state.autoscale is not None:
        auto = state.autoscale
        lines.append(
            f"  autoscale: {auto.minimum}..{auto.maximum} processes, "
            f"{auto.backlog_per_worker} waiting job(s) per process, "
            f"shrinks after {auto.stabilization_s:g} s"
        )
    live = {r.id: r.max_processes for r in fleet.supervisors() if _live_in(r, state.group)}
    shares = split(state.processes, live)
    if live:
        each = ", ".join(f"{sid} runs {share}" for sid, share in shares.shares.items())
        lines.append(f"  split: {each}")
    if shares.capped:
        lines.append(f"  note: group {state.group} {shares.note}")
    elif not live:
        lines.append(f"  note: no supervisor of group {state.group} is live yet")
    return lines


def _live_in(record: SupervisorRecord, group: str) -> bool:
    return record.group == group and not record.lost
