"""The fleet: ``GET /v1/fleet`` (queues, groups, supervisors: ``conveyor status --json``'s
picture), ``GET /v1/groups/{group}`` and ``PUT /v1/groups/{group}`` (set its total, or its
autoscale bounds: ``conveyor scale``), ``PUT`` and ``DELETE /v1/queues/{queue}/pause``
(``conveyor pause`` and ``resume``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from producer.http.auth import Access
from producer.http.bodies import parse_body, request_body
from producer.http.dashboard_models import PauseOut
from producer.http.errors import json_response
from producer.http.fleet_models import FleetOut, GroupIn, GroupOut
from producer.http.fleet_service import FleetService
from producer.http.routes import QueueName, errors
from services.names import NAME_PATTERN

REQUEST_BODIES = (GroupIn,)
"""The bodies these routes parse themselves (``bodies.parse_body``), for the OpenAPI document."""
GroupName = Annotated[str, Path(pattern=NAME_PATTERN, description="A group name.")]


def add_fleet_routes(router: APIRouter, fleet: FleetService, guard: Access) -> None:
    """Add the fleet routes, served by ``fleet``, to ``router``, behind ``guard``."""

    @router.get(
        "/v1/fleet",
        response_model=FleetOut,
        responses=errors(401, 503),
        summary="Queues, groups and supervisors: what waits, what runs, who is lost",
        tags=["fleet"],
        dependencies=guard.dependencies,
    )
    async def read_fleet() -> Response:
        return json_response(await fleet.view())

    @router.get(
        "/v1/groups/{group}",
        response_model=GroupOut,
        responses=errors(401, 404, 422, 503),
        summary="One group: its desired total, processes alive, autoscale, supervisors",
        tags=["fleet"],
        dependencies=guard.dependencies,
    )
    async def read_group(group: GroupName) -> Response:
        return json_response(await fleet.group(group))

    @router.put(
        "/v1/groups/{group}",
        response_model=GroupOut,
        responses=errors(400, 401, 413, 422, 503),
        summary="Set a group's total of worker processes across the fleet, or autoscale it",
        openapi_extra=request_body(GroupIn),
        tags=["fleet"],
        dependencies=guard.dependencies,
    )
    async def scale_group(group: GroupName, request: Request) -> Response:
        body = await parse_body(request, GroupIn)
        return json_response(await fleet.scale(group, body))

    @router.put(
        "/v1/queues/{queue}/pause",
        response_model=PauseOut,
        responses=errors(401, 422, 503),
        summary="Pause a queue: consumers take none of its jobs; producers still put",
        tags=["fleet"],
        dependencies=guard.dependencies,
    )
    async def pause(queue: QueueName) -> Response:
        changed = await fleet.pause(queue)
        return json_response({"queue": queue, "paused": True, "changed": changed})

    @router.delete(
        "/v1/queues/{queue}/pause",
        response_model=PauseOut,
        responses=errors(401, 422, 503),
        summary="Resume a paused queue",
        tags=["fleet"],
        dependencies=guard.dependencies,
    )
    async def resume(queue: QueueName) -> Response:
        changed = await fleet.resume(queue)
        return json_response({"queue": queue, "paused": False, "changed": changed})
