"""The ``conveyor`` command: the one place where its commands are put together.

``COMMANDS`` names every command and the module it lives in, as a string: a command's module
(and everything it imports) is imported only when that command runs, so ``conveyor --help``
and each command start fast. This table is the only place where the core (``services``) names
producer or consumer modules; ``tests/test_architecture.py`` checks that, and that every entry
is a click command. A new command (``serve``, ``scale``, ``status``, ``cron``, ``bench``, ...)
is one more line here; an old name kept working (``dead-letters`` for ``dead``) is one more
line of ``ALIASES``.

``conveyor`` is this module's ``main`` (pyproject's ``[project.scripts]``); ``consumer.cli:main``
is the same group under its old name, and ``python -m consumer`` runs it too.
"""

from __future__ import annotations

import click

from services.cli.lazy import LazyCommand, LazyGroup
from services.cli.logging_options import group_logging_options, start_logging

COMMANDS = {
    "bench": LazyCommand(
        "consumer.cli.bench:bench_command",
        "Measure enqueue, drain, IO, latency and CPU scaling of Conveyor on this machine.",
    ),
    "cron": LazyCommand(
        "consumer.cli.cron:cron_group",
        "List the periodic jobs: schedule, queue, last and next run.",
    ),
    "abort": LazyCommand(
        "consumer.cli.cancel:abort_command",
        "Stop jobs: cancel those that wait, and abort those that run.",
    ),
    "cancel": LazyCommand(
        "consumer.cli.cancel:cancel_command",
        "Cancel jobs that wait (queued, scheduled, or waiting for a retry): they never run.",
    ),
    "dead": LazyCommand(
        "consumer.cli.dead_letters:dead_letters_group",
        "List, show, requeue or purge dead letters.",
    ),
    "enqueue": LazyCommand(
        "producer.cli:enqueue_command",
        "Put job NAME with ARGs on a queue and print the job id.",
    ),
    "pause": LazyCommand(
        "consumer.cli.pause:pause_command",
        "Stop consumers taking jobs from QUEUE; producers can still enqueue.",
    ),
    "resume": LazyCommand(
        "consumer.cli.pause:resume_command",
        "Let consumers take jobs from a paused QUEUE again.",
    ),
    "run": LazyCommand(
        "consumer.cli.run:run_command",
        "Run producers and a consumer pool together, with progress and a summary.",
    ),
    "scale": LazyCommand(
        "consumer.cli.scale:scale_command",
        "Set how many worker processes a group runs across the fleet, or autoscale it.",
    ),
    "serve": LazyCommand(
        "producer.http.command:serve_command",
        "Serve the HTTP API: put jobs on queues, follow, cancel them, manage dead letters.",
    ),
    "status": LazyCommand(
        "consumer.cli.status:status_command",
        "Show queues, groups and supervisors of the fleet: what waits, what runs, who is lost.",
    ),
    "worker": LazyCommand(
        "consumer.cli.worker:worker_command",
        "Consume jobs with a supervised pool of worker processes.",
    ),
}
"""Every ``conveyor`` command: its name, where it lives, and its line in ``conveyor --help``."""

ALIASES = {"dead-letters": "dead"}
"""Old names kept working: ``conveyor dead-letters list`` is ``conveyor dead list``."""


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    aliases=ALIASES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="conveyor", message="conveyor %(version)s")
@group_logging_options
@click.pass_context
def main(ctx: click.Context, log_level: str, log_format: str) -> None:
    """Conveyor: a fast, trustworthy task queue.

    \b
    Try it:        conveyor run                     (demo jobs, memory queue, one process tree)
    Consume:       conveyor worker --url redis://localhost:6379/0 --jobs myapp.jobs:registry
    Produce:       conveyor enqueue resize photo.jpg 640 --url redis://localhost:6379/0
    Dead letters:  conveyor dead list --url redis://localhost:6379/0
    Scale:         conveyor scale default=8 --url redis://localhost:6379/0
    """
    start_logging(ctx, log_level, log_format)  # the commands that start processes pass it on
