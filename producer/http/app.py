"""``create_app``: the ASGI application of ``conveyor serve``, put together from its parts.

Layers, outside in: ``BodyLimit`` (no body over the cap is read), FastAPI's routing, the bearer
token (``auth.access``: a dependency of every route but health, checked by the submission
routes themselves, see ``direct``), the routes, and the error handlers that give every failure
the one JSON error body. The service's backend is checked when the app starts
(its lifespan) and closed when it stops.

The routes are added to the application's own router, not included from routers of their own:
FastAPI matches included routers through a wrapper per router, which costs a one-job
submission ~15% of its throughput. ``fastapi_options`` turns off FastAPI's built-in
OpenTelemetry hooks (versions that have them check for a configured provider on every request,
another ~10%); the service's numbers are Prometheus metrics. ``scripts/bench_http.py`` builds
its bare endpoint with the same options, so the two are compared on equal terms.

The dashboard (``routes.dashboard``: static pages under ``/dashboard/`` and their aggregated
reads) is added when a ``DashboardService`` is given; the history sampler (``sampling``), when
given, runs as a task of the lifespan; ``--dashboard-read-only`` adds ``ReadOnlyBrowser``.

``extra_routers`` is where other parts of Conveyor add routes without editing this module
(``GET /metrics``, say); they are served as they are, outside the token like health checks
unless they carry dependencies of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, FastAPI

from producer.http.auth import access
from producer.http.bodies import document_bodies
from producer.http.dashboard_service import DashboardService
from producer.http.errors import install_error_handlers
from producer.http.fleet_service import FleetService
from producer.http.limits import BodyLimit
from producer.http.readonly import ReadOnlyBrowser
from producer.http.routes import jobs, queues
from producer.http.routes.dashboard import add_dashboard
from producer.http.routes.fleet import REQUEST_BODIES, add_fleet_routes
from producer.http.routes.health import add_health_routes
from producer.http.sampling import HistorySampler
from producer.http.service import JobService
from producer.http.settings import ServeSettings


def create_app(
    service: JobService,
    settings: ServeSettings,
    *,
    extra_routers: Sequence[APIRouter] = (),
    fleet: FleetService | None = None,
    dashboard: DashboardService | None = None,
    sampler: HistorySampler | None = None,
) -> FastAPI:
    """The HTTP API on ``service``, as ``settings`` say (token, body cap); the fleet routes
    when ``fleet`` is given, the dashboard with ``dashboard``, history sampled by ``sampler``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        sampling = asyncio.create_task(sampler.run()) if sampler is not None else None
        try:
            yield
        finally:
            if sampling is not None:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
            await service.close()
            if fleet is not None:
                await fleet.close()

    app = FastAPI(
        title="Conveyor",
        version=_version(),
        summary="Put jobs on queues, follow and cancel them, manage dead letters.",
        docs_url=None,  # the interactive pages load scripts from a CDN; /openapi.json is here
        redoc_url=None,
        lifespan=lifespan,
        **fastapi_options(),
    )
    guard = access(settings.token)
    jobs.add_job_routes(app.router, service, guard)
    queues.add_queue_routes(app.router, service, guard)
    if fleet is not None:
        add_fleet_routes(app.router, fleet, guard)
    add_health_routes(app.router, service)
    if dashboard is not None:
        add_dashboard(app, dashboard, guard)
    for router in extra_routers:
        app.include_router(router)
    document_bodies(app, [*jobs.REQUEST_BODIES, *queues.REQUEST_BODIES, *REQUEST_BODIES])
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.dashboard_read_only:
        app.add_middleware(ReadOnlyBrowser)
    return app


def fastapi_options() -> dict[str, Any]:
    """Options for ``FastAPI(...)``: its built-in telemetry off where it has any."""
    if "telemetry" in inspect.signature(FastAPI).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def _version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0"
