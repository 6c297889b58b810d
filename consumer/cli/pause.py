"""``conveyor pause`` and ``conveyor resume``: hold a queue's jobs, or let them run again.

A pause is stored in the backend (``FleetControl.pause``), so it outlives restarts; every
supervisor hands it to its worker processes at its next reconcile turn (about a second).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from consumer.cli.fleet_access import fleet_access_options, opened_fleet, operator
from services.names import check_queue_name


def _checked(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return tuple(check_queue_name(name) for name in value)


@click.command("pause")
@fleet_access_options
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...", callback=_checked)
def pause_command(url: str, queues: tuple[str, ...], **options: Any) -> None:
    """Stop consumers taking jobs from QUEUE; producers can still enqueue.

    The pause is stored in the backend (it outlives restarts, until `conveyor resume QUEUE`)
    and reaches every worker within about a second; jobs already taken finish. A queue paused
    already stays as it was (exit 0). On memory:// this reaches a running `conveyor run`
    through its control socket. Exit codes: 0 done, 2 bad input, 1 backend unreachable.
    """
    with opened_fleet(url, options) as fleet:
        for queue in queues:
            if fleet.pause(queue, set_by=operator()):
                click.echo(f"paused {queue}")
                continue
            found = {state.queue: state for state in fleet.pauses()}.get(queue)
            since = ""
            if found is not None:
                when = datetime.fromtimestamp(found.set_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                since = f" (by {found.set_by or 'someone'} at {when})"
            click.echo(f"{queue} is already paused{since}")


@click.command("resume")
@fleet_access_options
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...", callback=_checked)
def resume_command(url: str, queues: tuple[str, ...], **options: Any) -> None:
    """Let consumers take jobs from a paused QUEUE again.

    Workers pick it up within about a second. A queue that is not paused is left alone
    (exit 0). On memory:// this reaches a running `conveyor run` through its control socket.
    Exit codes: 0 done, 2 bad input, 1 backend unreachable.
    """
    with opened_fleet(url, options) as fleet:
        for queue in queues:
            click.echo(f"resumed {queue}" if fleet.resume(queue) else f"{queue} is not paused")
