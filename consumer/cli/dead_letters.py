"""``conveyor dead-letters list|show|requeue|purge`` (short: ``conveyor dead``): look at the
jobs a queue gave up on, one whole, retry them, or drop them for good.

``--job NAME`` picks the letters of one job name (read from each letter's body) among the
newest ``LOOKUP_LIMIT`` of the queue.

The commands read through ``QueueInspector`` and revive through ``QueueAdmin``, the two
smallest roles of the queue protocol that they need.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from logging import WARNING
from typing import Any

import click

from services import exitcodes
from services.backends import open_queue
from services.cli.logging_options import say
from services.cli.options import (
    connect_url,
    connection_options,
    queue_option,
    rq_serializer_option,
)
from services.names import check_job_id
from services.protocol import DeadLetter, QueueAdmin, QueueInspector
from services.settings import QueueSettings

LOOKUP_LIMIT = QueueSettings().dead_letter_max
"""How many dead letters ``requeue`` reads to tell which asked-for ids are not there."""


@click.group("dead")
def dead_letters_group() -> None:
    """List, show, requeue or purge dead letters."""


job_name_option = click.option(
    "--job", "job_name", default=None, metavar="NAME", help="Only the letters of job NAME."
)


def job_name(letter: DeadLetter) -> str | None:
    """The job name inside the letter's body; None when the body is not a job's."""
    try:
        record = json.loads(letter.body)
    except (ValueError, RecursionError):
        return None
    name = record.get("name") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def chosen_letters(
    inspector: QueueInspector, queue: str, name: str | None, limit: int = LOOKUP_LIMIT
) -> list[DeadLetter]:
    """The newest ``limit`` letters of ``queue`` (of job ``name`` only, when given)."""
    if name is None:
        return inspector.dead_letters(queue, limit=limit)
    letters = inspector.dead_letters(queue, limit=LOOKUP_LIMIT)
    return [letter for letter in letters if job_name(letter) == name][:limit]


def describe_letter(letter: DeadLetter) -> str:
    """The letter whole: id, queue, job name, time, the body (decoded) and the reason."""
    try:
        body = json.dumps(json.loads(letter.body), indent=2, sort_keys=True)
    except (ValueError, RecursionError):
        body = letter.body.decode("utf-8", errors="replace")
    when = datetime.fromtimestamp(letter.failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "\n".join(
        [
            f"job id:    {letter.job_id}",
            f"queue:     {letter.queue}",
            f"job:       {job_name(letter) or '(not a job body)'}",
            f"failed at: {when}",
            "body:",
            body,
            "reason:",
            letter.reason.rstrip(),
        ]
    )


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
@rq_serializer_option
@queue_option(text="Queue whose dead letters to show.")
@job_name_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def dead_letters_list(
    url: str, queue: str, job_name: str | None, limit: int, **options: Any
) -> None:
    """Show the newest dead letters: job id, when it failed (UTC), the reason's last line."""
    inspector: QueueInspector = open_queue(connect_url(url, options))
    try:
        letters = chosen_letters(inspector, queue, job_name, limit)
    finally:
        inspector.close()
    for letter in letters:
        click.echo(format_letter(letter))
    say(f"{len(letters)} dead letter(s) shown")


def _checked_ids(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return tuple(check_job_id(job_id) for job_id in value)


@dead_letters_group.command("show")
@connection_options()
@rq_serializer_option
@queue_option(text="Queue the dead letter is on.")
@click.argument("job_id", callback=lambda ctx, param, value: check_job_id(value))
def dead_letters_show(url: str, queue: str, job_id: str, **options: Any) -> None:
    """Print one dead letter whole: its body decoded and its reason (the traceback).

    Exit code 1 when JOB_ID is not among the queue's newest dead letters.
    """
    inspector: QueueInspector = open_queue(connect_url(url, options))
    try:
        found = [
            letter for letter in chosen_letters(inspector, queue, None) if letter.job_id == job_id
        ]
    finally:
        inspector.close()
    if not found:
        say(f"{job_id} is not among the dead letters of {queue!r}", level=WARNING)
        sys.exit(exitcodes.ERROR)
    click.echo(describe_letter(found[0]))


@dead_letters_group.command("purge")
@connection_options()
@rq_serializer_option
@queue_option(text="Queue whose dead letters to drop.")
@job_name_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("job_ids", nargs=-1, callback=_checked_ids)
def dead_letters_purge(
    url: str, queue: str, job_name: str | None, yes: bool, job_ids: tuple[str, ...], **options: Any
) -> None:
    """Drop dead letters for good (all, those of --job NAME, or the JOB_IDS given).

    Asks for confirmation unless --yes; answering no exits 1 and drops nothing.
    """
    backend = open_queue(connect_url(url, options))
    try:
        chosen = _chosen_ids(backend, queue, job_name, job_ids)
        what = "all dead letters" if chosen is None else f"{len(chosen)} dead letter(s)"
        if not yes and not click.confirm(f"Drop {what} of {queue!r} for good?", err=True):
            sys.exit(exitcodes.ERROR)
        count = backend.delete_dead(queue, chosen) if chosen != [] else 0
    finally:
        backend.close()
    click.echo(f"purged {count} dead letter(s)")


def _chosen_ids(
    inspector: QueueInspector, queue: str, name: str | None, job_ids: tuple[str, ...]
) -> list[str] | None:
    """The ids ``--job`` and JOB_IDS pick (both: those in both); None: every letter."""
    if name is None:
        return list(job_ids) or None
    named = [letter.job_id for letter in chosen_letters(inspector, queue, name)]
    return [i for i in named if i in job_ids] if job_ids else named


@dead_letters_group.command("requeue")
@connection_options()
@rq_serializer_option
@queue_option(text="Queue whose dead letters to put back.")
@job_name_option
@click.argument("job_ids", nargs=-1, callback=_checked_ids)
def dead_letters_requeue(
    url: str, queue: str, job_name: str | None, job_ids: tuple[str, ...], **options: Any
) -> None:
    """Put dead letters (all, those of --job NAME, or the JOB_IDS given) back on their queue.

    Ids that are not among the queue's dead letters are named on stderr; the exit code is 1
    when none of the JOB_IDS given was found.
    """
    backend = open_queue(connect_url(url, options))
    try:
        if job_name is not None:
            job_ids = tuple(_chosen_ids(backend, queue, job_name, job_ids) or ())
            if not job_ids:
                click.echo("requeued 0 job(s)")
                return
        count, missing = requeue_letters(backend, backend, queue=queue, job_ids=job_ids)
    finally:
        backend.close()
    click.echo(f"requeued {count} job(s)")
    if missing:
        say(f"not among the dead letters of {queue!r}: {', '.join(missing)}", level=WARNING)
    if job_ids and count == 0:
        sys.exit(exitcodes.ERROR)
