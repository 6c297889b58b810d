"""``GET /metrics``: the service's Prometheus metrics (jobs enqueued, queue depth at scrape time).

Outside the token like the health checks, as scrapers expect, and outside the OpenAPI schema:
it is text for Prometheus, not part of the JSON API. What the numbers are is
``services.metrics``'s business; this route only hands it the request's ``Accept`` header.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from producer.http.service import JobService
from services.metrics.service import ServiceMetrics


def metrics_router(metrics: ServiceMetrics, service: JobService) -> APIRouter:
    """A router with ``GET /metrics`` for ``metrics``, reading depth from ``service``'s backend."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept"), service.backend)
        return Response(body, media_type=content_type)

    return router
