"""``--metrics-port`` and ``--metrics-host``: a supervisor's ``GET /metrics``, and its wiring.

``serving_metrics`` builds what the endpoint shows (``consumer.pool_metrics`` for the pool and
its children's job counters, ``services.metrics.depth`` for the queues' depth), serves it for
as long as the command runs, and gives the ``PoolMetrics`` to hand to the supervisor. Without
``--metrics-port`` nothing is served and the children keep no per-job counters.

The host defaults to loopback; in a container the endpoint must bind every interface
(``CONVEYOR_METRICS_HOST=0.0.0.0``) for Prometheus to reach it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from consumer.pool_metrics import PoolMetrics
from services.backends import open_queue
from services.cli.options import apply_options
from services.metrics.depth import SCRAPE_TIMEOUT_S, QueueDepth
from services.metrics.job_counters import JobLabels
from services.protocol import QueueInspector
from services.registry import Registry
from services.settings import QueueSettings


def metrics_options(func: Any) -> Any:
    """``--metrics-port`` (``CONVEYOR_METRICS_PORT``) and ``--metrics-host``."""
    return apply_options(
        func,
        [
            click.option(
                "--metrics-port",
                type=click.IntRange(min=0, max=65535),
                default=None,
                envvar="CONVEYOR_METRICS_PORT",
                show_envvar=True,
                help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free "
                "port, logged). Default: no metrics.",
            ),
            click.option(
                "--metrics-host",
                default="127.0.0.1",
                show_default=True,
                envvar="CONVEYOR_METRICS_HOST",
                show_envvar=True,
                help="Address the metrics endpoint binds; 0.0.0.0 in a container.",
            ),
        ],
    )


@contextlib.contextmanager
def serving_metrics(
    options: dict[str, Any],
    *,
    url: str,
    queues: tuple[str, ...],
    registry: Registry,
    inspector: QueueInspector | None = None,
) -> Iterator[PoolMetrics | None]:
    """Serve ``/metrics`` while the block runs, if ``--metrics-port`` was given (the two flags
    are popped from ``options``); yields the ``PoolMetrics`` for the supervisor, else None.

    The queues' depth is read through ``inspector`` (``conveyor run``: its own queue, which a
    ``memory://`` URL cannot reach from elsewhere), else through a connection of its own to
    ``url`` whose every call gives up after ``SCRAPE_TIMEOUT_S``: a scrape never hangs on an
    unreachable backend.
    """
    port, host = options.pop("metrics_port"), options.pop("metrics_host")
    if port is None:
        yield None
        return
    # Imported only when served: prometheus-client is not on ``conveyor worker``'s start path.
    from services.metrics.exposition import MetricsRegistry  # noqa: PLC0415

    pool = PoolMetrics(JobLabels(queues=queues, jobs=tuple(registry.names())))
    reader = inspector or open_queue(url, QueueSettings(op_timeout_s=SCRAPE_TIMEOUT_S))
    exported = MetricsRegistry(pool.families, QueueDepth(reader, queues).families)
    try:
        with exported.server(host, port):
            yield pool
    finally:
        if inspector is None:
            reader.close()
