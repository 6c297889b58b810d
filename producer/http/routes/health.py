"""Health, never behind the token: ``GET /healthz`` (the process answers) and ``GET /readyz``
(the backend answers and is not known to have lost data; 503 with the reasons otherwise)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from producer.http.errors import json_response
from producer.http.models import HealthOut, ReadyOut
from producer.http.routes import errors
from producer.http.service import JobService


def add_health_routes(router: APIRouter, service: JobService) -> None:
    """Add ``/healthz`` and ``/readyz`` for ``service`` to ``router`` (no token needed)."""

    @router.get(
        "/healthz", response_model=HealthOut, summary="The service is alive", tags=["health"]
    )
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: errors(503)[503] | {"description": "Not ready: the reasons say why."}},
        summary="The backend answers and has not lost data",
        tags=["health"],
    )
    async def readyz() -> Response:
        state = await service.ready_or_raise()
        return json_response({"status": "ready", "warnings": state.warnings})
