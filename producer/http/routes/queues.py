"""Queues: ``GET /v1/queues`` (every queue's counts), ``GET /v1/queues/{queue}``, and dead
letters: ``GET /v1/queues/{queue}/dead-letters``, ``POST .../dead-letters/requeue``,
``DELETE .../dead-letters`` (all, or ``?job_id=`` ones), ``DELETE .../dead-letters/{job_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from producer.http.auth import Access
from producer.http.bodies import parse_body, request_body
from producer.http.errors import json_response
from producer.http.models import DeleteOut, LettersOut, QueueOut, QueuesOut, RequeueIn, RequeueOut
from producer.http.routes import JobId, QueueName, errors
from producer.http.service import JobService, LetterView
from services.names import NAME_PATTERN
from services.protocol import QueueCounts

REQUEST_BODIES = (RequeueIn,)
"""The bodies these routes parse themselves (``bodies.parse_body``), for the OpenAPI document."""
Limit = Annotated[int, Query(ge=1, le=10_000, description="Newest letters to show.")]
JobIds = Annotated[
    list[Annotated[str, Query(pattern=NAME_PATTERN)]] | None,
    Query(alias="job_id", description="Only these jobs' letters (repeat the parameter)."),
]


def _queue(name: str, counts: QueueCounts) -> dict[str, object]:
    return {
        "name": name,
        "waiting": counts.waiting,
        "delayed": counts.delayed,
        "in_flight": counts.in_flight,
        "done": counts.done,
        "dead": counts.dead,
    }


def _letter(view: LetterView) -> dict[str, object]:
    letter = view.letter
    return {
        "job_id": letter.job_id,
        "reason": letter.reason,
        "failed_at": letter.failed_at,
        "job": view.job,
        "args": view.args,
        "kwargs": view.kwargs,
    }


def add_queue_routes(router: APIRouter, service: JobService, guard: Access) -> None:
    """Add the routes on queues and their dead letters, served by ``service``, to ``router``,
    behind ``guard``."""

    @router.get(
        "/v1/queues",
        response_model=QueuesOut,
        responses=errors(401, 503),
        summary="Every queue jobs were put on: waiting, delayed, in flight, done, dead",
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def list_queues() -> Response:
        found = await service.queue_counts()
        return json_response({"queues": [_queue(name, counts) for name, counts in found]})

    @router.get(
        "/v1/queues/{queue}",
        response_model=QueueOut,
        responses=errors(401, 422, 503),
        summary="One queue's counts (zeros for a queue never used)",
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def read_queue(queue: QueueName) -> Response:
        [(name, counts)] = await service.queue_counts([queue])
        return json_response(_queue(name, counts))

    @router.get(
        "/v1/queues/{queue}/dead-letters",
        response_model=LettersOut,
        responses=errors(401, 422, 503),
        summary="The newest dead letters of a queue, newest first",
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def list_letters(queue: QueueName, limit: Limit = 100) -> Response:
        letters = await service.dead_letters(queue, limit)
        return json_response({"queue": queue, "dead_letters": [_letter(v) for v in letters]})

    @router.post(
        "/v1/queues/{queue}/dead-letters/requeue",
        response_model=RequeueOut,
        responses=errors(400, 401, 413, 422, 503),
        summary="Put dead letters (all, or job_ids) back on their queue as fresh attempts",
        openapi_extra=request_body(RequeueIn),
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def requeue(queue: QueueName, request: Request) -> Response:
        body = await parse_body(request, RequeueIn)
        return json_response({"requeued": await service.requeue(queue, body.job_ids)})

    @router.delete(
        "/v1/queues/{queue}/dead-letters",
        response_model=DeleteOut,
        responses=errors(401, 422, 503),
        summary="Delete dead letters for good: all, or those of the job_id parameters",
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def delete_letters(queue: QueueName, job_ids: JobIds = None) -> Response:
        return json_response({"deleted": await service.delete_dead(queue, job_ids)})

    @router.delete(
        "/v1/queues/{queue}/dead-letters/{job_id}",
        response_model=DeleteOut,
        responses=errors(401, 404, 422, 503),
        summary="Delete one dead letter for good",
        tags=["queues"],
        dependencies=guard.dependencies,
    )
    async def delete_letter(queue: QueueName, job_id: JobId) -> Response:
        await service.delete_letter(queue, job_id)
        return json_response({"deleted": 1})
