"""``conveyor serve``: parse flags, check the backend once, then run the HTTP API on uvicorn.

uvicorn is imported here and nowhere else. It runs one event loop (uvloop and httptools when
installed: ``uvicorn[standard]``), logs through Conveyor's logging (``log_config=None``), and
owns SIGINT/SIGTERM: its handlers only set a flag; the server then stops accepting
connections, lets requests in flight finish (up to ``--shutdown-timeout``), closes the backend
(the app's lifespan) and returns. uvicorn then raises the signal again for the handler that
was there before it; ``_recorded_stops`` puts one there that only records, so a graceful stop
exits 0 instead of dying of the signal.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any, cast

import click
import uvicorn

from producer.http.app import create_app
from producer.http.dashboard_service import DashboardBackend, DashboardService
from producer.http.fleet_service import FleetService
from producer.http.routes.metrics import metrics_router
from producer.http.sampling import HistorySampler, SampledBackend
from producer.http.service import JobService
from producer.http.settings import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    ServeSettings,
    check_auth,
)
from services.backends import open_async_queue, open_queue, scheme_of
from services.cli.command import ConveyorCommand
from services.cli.options import connect_url, connection_options, queue_options, queue_settings
from services.errors import BackendUnavailableError, ConfigError
from services.loading import load_registry
from services.metrics.service import ServiceMetrics
from services.protocol import Backend, KeepsHistory
from services.registry import Registry
from services.settings import QueueSettings

log = logging.getLogger("conveyor.serve")


@click.command("serve", cls=ConveyorCommand)
@connection_options()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="CONVEYOR_HOST",
    help="Address to listen on. Anything but loopback needs a bearer token (or --no-auth).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    envvar="CONVEYOR_PORT",
    help="TCP port to listen on.",
)
@click.option(
    "--jobs",
    envvar="CONVEYOR_JOBS",
    show_envvar=True,
    metavar="MODULE:ATTR",
    help="Registry to check job names and arguments against (422 for an unknown job or "
    "arguments that do not fit). Without it any name is accepted; workers dead-letter "
    "unknown ones.",
)
@click.option(
    "--token-file",
    type=click.File("r"),
    envvar="CONVEYOR_TOKEN_FILE",
    show_envvar=True,
    help="Require `Authorization: Bearer <token>` with the token in this file (or set the "
    "CONVEYOR_TOKEN variable). Required unless --host is loopback or --no-auth is given.",
)
@click.option("--token", hidden=True, envvar="CONVEYOR_TOKEN")
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without a token on a non-loopback --host (only where the port is not exposed).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="Larger request bodies are refused with 413.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Most jobs one batch request may carry.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="After SIGTERM, how long requests in flight may take to finish.",
)
@click.option(
    "--dashboard/--no-dashboard",
    default=True,
    show_default=True,
    help="Serve the dashboard's pages at /dashboard/ (their data needs the token too).",
)
@click.option(
    "--dashboard-read-only",
    is_flag=True,
    envvar="CONVEYOR_DASHBOARD_READ_ONLY",
    help="The dashboard shows no actions, and the API refuses state changes sent by a browser "
    "(scripts with the token keep the full API).",
)
@click.option(
    "--history-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Sample every queue's numbers into the backend's history this often, for the "
    "dashboard's charts (0: do not sample).",
)
@queue_options
def serve_command(
    url: str,
    jobs: str | None,
    token_file: IO[str] | None,
    token: str | None,
    no_auth: bool,
    **options: Any,
) -> None:
    """Serve the HTTP API: put jobs on queues, follow, cancel them, manage dead letters.

    POST /v1/queues/{queue}/jobs and /v1/queues/{queue}/batches, GET and DELETE
    /v1/jobs/{id}, GET /v1/queues, dead letters under /v1/queues/{queue}/dead-letters;
    GET /v1/fleet, GET and PUT /v1/groups/{group} (the fleet: `conveyor status`, `conveyor
    scale`); PUT and DELETE /v1/queues/{queue}/pause; the dashboard at /dashboard/ (its data
    under /v1/dashboard); GET /healthz and /readyz need no token. The schema is at /openapi.json.
    SIGTERM or Ctrl+C: stop accepting, finish requests in flight, exit 0.
    """
    if scheme_of(url) == "memory":
        raise ConfigError(
            "a memory:// queue lives inside one `conveyor run` process tree, so a separate "
            "`conveyor serve` process cannot reach it: give a redis:// URL shared with the "
            "workers"
        )
    if token_file is not None:
        token = token_file.read().strip()
    backend_url = connect_url(url, options)
    queue = queue_settings(options)
    settings = ServeSettings(
        host=options.pop("host"),
        port=options.pop("port"),
        token=token,
        max_body_bytes=options.pop("max_body_bytes"),
        max_batch=options.pop("max_batch"),
        access_log=options.pop("access_log"),
        shutdown_timeout_s=options.pop("shutdown_timeout"),
        dashboard=options.pop("dashboard"),
        dashboard_read_only=options.pop("dashboard_read_only"),
        history_interval_s=options.pop("history_interval"),
    )
    check_auth(settings, no_auth=no_auth)
    registry = load_registry(jobs) if jobs else None
    asyncio.run(_probe(backend_url, queue))
    metrics = ServiceMetrics()
    service = JobService(
        open_async_queue(backend_url, queue),
        registry=registry,
        max_batch=settings.max_batch,
        on_enqueued=metrics.enqueued.add,
    )
    backend = open_queue(backend_url, queue)
    fleet = FleetService(backend)
    app = create_app(
        service,
        settings,
        fleet=fleet,
        extra_routers=[metrics_router(metrics, service)],
        **dashboard_parts(backend, registry, settings),
    )
    _run(app, settings)


def dashboard_parts(
    backend: Backend, registry: Registry | None, settings: ServeSettings
) -> dict[str, Any]:
    """The dashboard and the history sampler ``create_app`` takes, as ``settings`` say."""
    if not isinstance(backend, KeepsHistory):
        return {}  # a backend without history serves the API alone
    parts: dict[str, Any] = {}
    if settings.dashboard:
        parts["dashboard"] = DashboardService(
            cast(DashboardBackend, backend), registry, read_only=settings.dashboard_read_only
        )
    if settings.history_interval_s > 0:
        parts["sampler"] = HistorySampler(
            cast(SampledBackend, backend), settings.history_interval_s
        )
    return parts


async def _probe(url: str, settings: QueueSettings) -> None:
    """Reach the backend once before serving: refused credentials or a refusing ACL stop the
    command (exit 2); a backend that does not answer yet only makes /readyz say 503."""
    backend = open_async_queue(url, settings)
    try:
        await backend.queues()
    except BackendUnavailableError as exc:
        log.warning("%s; serving anyway: /readyz answers 503 until it is back", exc)
    finally:
        await backend.aclose()


def _run(app: Any, settings: ServeSettings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # Conveyor's logging (configured by the `conveyor` group)
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    log.info(
        "serving on http://%s:%d (%s)",
        settings.host,
        settings.port,
        "bearer token required" if settings.token else "no authentication",
    )
    # What start-up built (FastAPI, the schemas, the registry) is kept for good: moved out of
    # the collector's generations, it is not walked again by the collections that a batch's
    # thousands of short-lived objects set off (a quarter of a batch's CPU time otherwise).
    gc.freeze()
    with _recorded_stops() as stops:
        server.run()
    if stops:
        log.info("stopped by %s", signal.Signals(stops[0]).name)


@contextmanager
def _recorded_stops() -> Iterator[list[int]]:
    """SIGINT and SIGTERM only recorded (uvicorn raises them again once it has stopped)."""
    seen: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    old = {signum: signal.signal(signum, record) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
