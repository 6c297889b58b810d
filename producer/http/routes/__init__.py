"""The API's routes, one router per resource, each built around a ``JobService``:

``jobs`` (submit one or a batch, read, cancel), ``queues`` (counts, dead letters) and
``health`` (``/healthz``, ``/readyz``, never behind the token). What they share is here: the
path parameters and the error answers each route documents.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from producer.http.models import ErrorOut
from services.names import NAME_PATTERN

QueueName = Annotated[str, Path(pattern=NAME_PATTERN, description="A queue name.")]
JobId = Annotated[str, Path(pattern=NAME_PATTERN, description="A job id.")]

_WHY = {
    400: "The body is not JSON.",
    401: "No bearer token, or a wrong one.",
    404: "Not found.",
    409: "The job is running or finished: too late to cancel.",
    413: "The body (or one job) is over its size limit.",
    422: "The request breaks the schema, names an unknown job, or has arguments that do not fit.",
    503: "The backend is unavailable (not confirmed: retry, with the same Idempotency-Key).",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses (the one JSON error body)."""
    return {status: {"model": ErrorOut, "description": _WHY[status]} for status in statuses}
