"""``conveyor worker``: consume jobs with a supervised pool of worker processes.

Parse flags, build ``SupervisorSettings``, wait for the backend, then run the supervisor until
it has an exit code.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from consumer.cli.fleet_options import fleet_link, fleet_options, with_fleet
from consumer.cli.metrics_options import metrics_options, serving_metrics
from consumer.cli.pool_options import (
    pool_options,
    pool_settings,
    result_cap_option,
    scheduler_option,
)
from consumer.process_handle import start_tracker_early
from consumer.scheduler import scheduling
from consumer.startup import wait_for_backend
from consumer.supervisor import Supervisor
from services import exitcodes
from services.backends import open_queue, scheme_of
from services.cli.options import (
    connect_url,
    connection_options,
    queue_option,
    queue_options,
    queue_settings,
    rq_serializer_option,
)
from services.errors import ConfigError
from services.loading import load_registry
from services.logs import LogSettings


@click.command("worker")
@connection_options()
@rq_serializer_option
@queue_option(multiple=True, text="Queue to consume; repeat for several, highest priority first.")
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
@fleet_options
@queue_options
@result_cap_option
@scheduler_option
@metrics_options
@click.pass_obj
def worker_command(
    logs: LogSettings,
    /,
    url: str,
    queues: tuple[str, ...],
    jobs: str,
    burst: bool,
    lease: float,
    **options: Any,
) -> None:
    """Consume jobs with a supervised pool of worker processes.

    At start the worker checks the backend: a wrong password or an ACL that denies a command
    exits 2 with one line. A Redis that cannot be reached yet is retried, logged, with backoff
    up to 30 s (like a worker started before its broker); stop it with Ctrl+C or SIGTERM.

    SIGTERM or Ctrl+C: stop fetching and let running jobs finish within --shutdown-timeout;
    a second signal hands every unfinished job back to the queue at once. SIGQUIT: that hard
    stop at once (every unfinished job goes back to the queue, none is lost: exit 0).
    Exit codes: 0 stopped cleanly, 2 bad usage or configuration, 3 a worker cannot start.

    Fleet: the worker registers in the backend under --group and beats every second (one
    silent for its --lease, at least 3 s, is listed lost). `conveyor scale GROUP=N` sets the
    group's total of worker processes; its live workers split it between them (in id order,
    each within its --max-processes) and follow within about a second: a share of 0 runs no
    process and waits. SIGTTIN/SIGTTOU move the group's total by one. Queues paused with
    `conveyor pause` are skipped (with --burst, a worker whose queues are all paused exits).

    Periodic jobs (`@registry.periodic`): each worker runs a scheduler (--no-scheduler: not
    this one); one of them leads and puts each due time's job once, fleet-wide; another takes
    over within about --lease when it dies. `conveyor cron list` shows them.
    """
    if scheme_of(url) == "memory":
        raise ConfigError(
            "the memory:// queue lives inside one process tree, so a standalone worker would "
            "see an empty queue of its own; run producers and workers together with "
            "`conveyor run`, or point both at a redis:// URL"
        )
    start_tracker_early(options["start_method"])
    registry = load_registry(jobs)  # fail fast in the parent with a clear message
    periodic = registry.periodics()
    run_scheduler = options.pop("scheduler")
    settings = pool_settings(options, jobs=jobs, queues=queues, burst=burst, logs=logs)
    settings = with_fleet(settings, options)
    url = connect_url(url, options)
    with serving_metrics(options, url=url, queues=queues, registry=registry) as metrics:
        backend = open_queue(url, queue_settings(options, lease_s=lease))
        if not wait_for_backend(backend):
            sys.exit(exitcodes.OK)  # stopped by a signal before it could start
        try:
            # Under its signals, resizing ones included.
            link = fleet_link(backend, lease_s=lease)
            with scheduling(backend, periodic, enabled=run_scheduler, lease_s=lease):
                code = Supervisor(backend, settings, metrics=metrics, fleet=link).run()
        finally:
            backend.close()
    sys.exit(code)
