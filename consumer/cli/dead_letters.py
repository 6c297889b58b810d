"""``conveyor dead-letters list|requeue`` (short: ``conveyor dead``): look at the jobs a queue
gave up on, or retry them.

The commands read through ``QueueInspector`` and revive through ``QueueAdmin``, the two
smallest roles of the queue protocol that they need.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from logging import WARNING
from typing import Any

import click

from services import exitcodes
from services.backends import open_queue
from services.cli.logging_options import say
from services.cli.options import connect_url, connection_options, queue_option
from services.names import check_job_id
from services.protocol import DeadLetter, QueueAdmin, QueueInspector
from services.settings import QueueSettings

LOOKUP_LIMIT = QueueSettings().dead_letter_max
"""How many dead letters ``requeue`` reads to tell which asked-for ids are not there."""


@click.group("dead-letters")
def dead_letters_group() -> None:
    """List dead letters, or put them back on their queue."""


def format_letter(letter: DeadLetter) -> str:
    """``<id>  <UTC time>  <the reason's last line>`` (the line that names the error)."""
    when = datetime.fromtimestamp(letter.failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    reason = letter.reason.strip()
    last = reason.splitlines()[-1] if reason else ""
    return f"{letter.job_id}  {when}  {last}"


def missing_ids(inspector: QueueInspector, queue: str, job_ids: tuple[str, ...]) -> list[str]:
    """The ``job_ids`` (once each, in order) that are not among ``queue``'s dead letters."""
    present = {letter.job_id for letter in inspector.dead_letters(queue, limit=LOOKUP_LIMIT)}
    return [job_id for job_id in dict.fromkeys(job_ids) if job_id not in present]


def requeue_letters(
    inspector: QueueInspector, admin: QueueAdmin, *, queue: str, job_ids: tuple[str, ...]
) -> tuple[int, list[str]]:
    """Revive ``queue``'s dead letters (all, or ``job_ids``): how many, and the ids not found."""
    missing = missing_ids(inspector, queue, job_ids) if job_ids else []
    return admin.revive(queue, list(job_ids) or None), missing


@dead_letters_group.command("list")
@connection_options()
@queue_option(text="Queue whose dead letters to show.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def dead_letters_list(url: str, queue: str, limit: int, **options: Any) -> None:
    """Show the newest dead letters: job id, when it failed (UTC), the reason's last line."""
    inspector: QueueInspector = open_queue(connect_url(url, options))
    try:
        letters = inspector.dead_letters(queue, limit=limit)
    finally:
        inspector.close()
    for letter in letters:
        click.echo(format_letter(letter))
    say(f"{len(letters)} dead letter(s) shown")


def _checked_ids(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return tuple(check_job_id(job_id) for job_id in value)


@dead_letters_group.command("requeue")
@connection_options()
@queue_option(text="Queue whose dead letters to put back.")
@click.argument("job_ids", nargs=-1, callback=_checked_ids)
def dead_letters_requeue(url: str, queue: str, job_ids: tuple[str, ...], **options: Any) -> None:
    """Put dead letters (all, or the JOB_IDS given) back on their queue.

    Ids that are not among the queue's dead letters are named on stderr; the exit code is 1
    when none of the JOB_IDS given was found.
    """
    backend = open_queue(connect_url(url, options))
    try:
        count, missing = requeue_letters(backend, backend, queue=queue, job_ids=job_ids)
    finally:
        backend.close()
    click.echo(f"requeued {count} job(s)")
    if missing:
        say(f"not among the dead letters of {queue!r}: {', '.join(missing)}", level=WARNING)
    if job_ids and count == 0:
        sys.exit(exitcodes.ERROR)
