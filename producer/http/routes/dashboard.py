"""The dashboard: its pages (static files under ``/dashboard/``, no token: they hold no data)
and its reads behind the token: ``GET /v1/dashboard`` (the fleet and the charts in one answer,
what a polling page asks for), ``GET /v1/dashboard/periodics``, ``GET /v1/dashboard/limits``,
and pages of a queue's waiting or delayed jobs, ``GET /v1/queues/{queue}/jobs``. Its actions
use the API's own routes (scale, pause, requeue, delete, cancel), with the same token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from producer.http.auth import Access
from producer.http.dashboard_models import DashboardOut, JobsPageOut, LimitsOut, PeriodicsOut
from producer.http.dashboard_service import DashboardService
from producer.http.errors import json_response
from producer.http.routes import QueueName, errors
from services.names import NAME_PATTERN

STATIC = Path(__file__).resolve().parent.parent / "static"
"""The dashboard's files: ``index.html``, its modules, and ``vendor/`` (uPlot, MIT)."""
State = Annotated[Literal["waiting", "delayed"], Query(description="Which jobs to list.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Jobs to skip.")]
PageSize = Annotated[int, Query(ge=1, le=500, description="Jobs in the page.")]
OneQueue = Annotated[str | None, Query(pattern=NAME_PATTERN, description="Chart only this queue.")]


def add_dashboard(app: FastAPI, dashboard: DashboardService, guard: Access) -> None:
    """Serve the dashboard's files and add its read routes to ``app``, behind ``guard``."""
    router = app.router

    @router.get("/dashboard", include_in_schema=False)
    async def to_dashboard() -> Response:
        return RedirectResponse("/dashboard/")

    @router.get(
        "/v1/dashboard",
        response_model=DashboardOut,
        responses=errors(401, 422, 503),
        summary="The dashboard's overview: the fleet, and throughput, backlog and waiting "
        "time over the last hour and day",
        tags=["dashboard"],
        dependencies=guard.dependencies,
    )
    async def overview(queue: OneQueue = None) -> Response:
        return json_response(await dashboard.overview(queue))

    @router.get(
        "/v1/dashboard/periodics",
        response_model=PeriodicsOut,
        responses=errors(401, 503),
        summary="Periodic jobs of the service's registry: schedule, last and next run",
        tags=["dashboard"],
        dependencies=guard.dependencies,
    )
    async def periodics() -> Response:
        return json_response(await dashboard.periodics())

    @router.get(
        "/v1/dashboard/limits",
        response_model=LimitsOut,
        responses=errors(401, 503),
        summary="Concurrency and rate limits the registry's jobs declare, and their use now",
        tags=["dashboard"],
        dependencies=guard.dependencies,
    )
    async def limits() -> Response:
        return json_response(await dashboard.limits())

    @router.get(
        "/v1/queues/{queue}/jobs",
        response_model=JobsPageOut,
        responses=errors(401, 404, 422, 503),
        summary="A page of a queue's waiting or delayed jobs, in the order they will run",
        tags=["dashboard"],
        dependencies=guard.dependencies,
    )
    async def list_jobs(
        queue: QueueName, state: State = "waiting", offset: Offset = 0, limit: PageSize = 50
    ) -> Response:
        return json_response(await dashboard.jobs(queue, state, offset, limit))

    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")
