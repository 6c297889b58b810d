"""Jobs: ``POST /v1/queues/{queue}/jobs`` (one), ``POST /v1/queues/{queue}/batches`` (many, all
or nothing), ``GET /v1/jobs/{job_id}`` (status and result), ``DELETE /v1/jobs/{job_id}``
(cancel a job that waits), ``POST /v1/jobs/{job_id}/abort`` (cancel it or stop it running).

The two submission routes are the hot path: they are ``direct.DirectRoute``s, which read their
parameters and body themselves (``bodies``) and check the token themselves (``Access.check``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from producer.http.auth import Access
from producer.http.bodies import parse_body, request_body
from producer.http.direct import DirectRoute
from producer.http.errors import json_response
from producer.http.models import (
    AbortOut,
    BatchIn,
    BatchOut,
    CancelOut,
    JobOut,
    SubmitIn,
    SubmitOut,
)
from producer.http.problems import InvalidRequest
from producer.http.routes import JobId, errors
from producer.http.service import JobService
from services.names import NAME_PATTERN

MAX_KEY_CHARS = 255
_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "queue",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": NAME_PATTERN},
        "description": "A queue name.",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
        "description": "Sending the same key again returns the job the first request stored "
        "(new: false) instead of storing a second one. A key that is a valid job id is the "
        "job's id; any other stands for one (its SHA-256).",
    },
]
"""The submission routes' parameters, which they read themselves (see ``bodies``)."""


REQUEST_BODIES = (SubmitIn, BatchIn)
"""The bodies these routes parse themselves (``bodies.parse_body``), for the OpenAPI document."""


def _key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")
    return key


def add_job_routes(router: APIRouter, service: JobService, guard: Access) -> None:
    """Add the routes on jobs, served by ``service``, to ``router``, behind ``guard``."""

    async def submit(request: Request) -> Response:
        guard.check(request)
        queue, key = request.path_params["queue"], _key(request)
        body = await parse_body(request, SubmitIn)
        done = await service.submit(
            queue, body, delay_s=body.delay_s, key=key, unique_key=body.unique_key
        )
        return json_response(
            {"job_id": done.job_id, "queue": queue, "new": done.new},
            202,
            {"Location": f"/v1/jobs/{done.job_id}"},
        )

    async def submit_batch(request: Request) -> Response:
        guard.check(request)
        queue, key = request.path_params["queue"], _key(request)
        body = await parse_body(request, BatchIn)
        if len(body.jobs) > service.max_batch:
            raise InvalidRequest(
                f"{len(body.jobs)} jobs in one batch, over the limit of {service.max_batch}"
            )
        done = await service.submit_batch(queue, body.jobs, delay_s=body.delay_s, key=key)
        jobs = [{"job_id": one.job_id, "new": one.new} for one in done]
        new_count = sum(one.new for one in done)
        answer = {"queue": queue, "count": len(jobs), "new_count": new_count, "jobs": jobs}
        return json_response(answer, 202)

    for path, endpoint, body, answer, summary in (
        ("/v1/queues/{queue}/jobs", submit, SubmitIn, SubmitOut, "Put one job on a queue"),
        (
            "/v1/queues/{queue}/batches",
            submit_batch,
            BatchIn,
            BatchOut,
            "Put many jobs on a queue: every one is checked first, then all are put",
        ),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            status_code=202,
            response_model=answer,
            responses=errors(400, 401, 413, 422, 503),
            summary=summary,
            openapi_extra=request_body(body) | {"parameters": _PARAMETERS},
            tags=["jobs"],
            dependencies=guard.dependencies,  # declares the scheme; the endpoint checks it
            route_class_override=DirectRoute,
        )

    @router.get(
        "/v1/jobs/{job_id}",
        response_model=JobOut,
        responses=errors(401, 404, 422, 503),
        summary="A job's status, attempts, last error and result",
        tags=["jobs"],
        dependencies=guard.dependencies,
    )
    async def read(job_id: JobId) -> Response:
        view = await service.job(job_id)
        return json_response(
            {
                "job_id": view.job_id,
                "status": view.status,
                "attempts": view.attempts,
                "error": view.error,
                "result": view.result,
            }
        )

    @router.delete(
        "/v1/jobs/{job_id}",
        response_model=CancelOut,
        responses=errors(401, 404, 409, 422, 503),
        summary="Cancel a job that waits (queued, scheduled, or waiting for a retry)",
        description="The job ends dead with the error 'cancelled' and never runs. A job "
        "running or finished is left alone: 409, with its status in the details.",
        tags=["jobs"],
        dependencies=guard.dependencies,
    )
    async def cancel(job_id: JobId) -> Response:
        await service.cancel(job_id)
        return json_response({"job_id": job_id, "cancelled": True, "status": "dead"})

    @router.post(
        "/v1/jobs/{job_id}/abort",
        response_model=AbortOut,
        status_code=202,
        responses=errors(401, 404, 409, 422, 503),
        summary="Abort a job: cancel it if it waits, stop it if it runs",
        description="A waiting job is cancelled ('dead'). A running one is stopped by its "
        "worker within about a second ('running' now; then dead, 'aborted ...', never "
        "retried): an async job is cancelled in place, any other by replacing its worker "
        "process. A finished job is left alone: 409, with its status in the details.",
        tags=["jobs"],
        dependencies=guard.dependencies,
    )
    async def abort(job_id: JobId) -> Response:
        status = await service.abort(job_id)
        return json_response({"job_id": job_id, "cancelled": True, "status": status}, 202)
