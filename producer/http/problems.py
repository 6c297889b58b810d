"""Every failure the HTTP API reports, as an HTTP status and a stable machine-readable code.

The service raises Conveyor's own errors (``services.errors``) and the ``ApiProblem``s below;
``problem_of`` turns any of them into ``Problem``: status, code, message, details, headers.
Client input never becomes a 5xx: only the backend's unavailability (or its refusal of our
configuration) does, as 503 with ``Retry-After``.

    status  code                 when
    ------  -------------------  -----------------------------------------------------------
    400     malformed_json       the body is not JSON
    401     unauthorized         no bearer token, or a wrong one
    404     job_not_found        no job has this id (never put, or its status expired)
    404     not_found            no dead letter has this id; no such path
    409     not_cancellable      the job is running or finished (too late), see "status"
    413     payload_too_large    the body is over --max-body-bytes, or a job over its cap
    422     invalid_request      the body breaks the schema (details: where and why)
    422     invalid_name         a queue name or job id breaks ``services.names``
    422     unknown_job          the registry has no such job (needs --jobs)
    422     invalid_arguments    the arguments do not fit the job function (needs --jobs)
    422     invalid_batch        some jobs of a batch are invalid: none was enqueued (details)
    503     backend_unavailable  the backend did not answer: not confirmed, retry (same key)
    503     queue_full           a bounded queue stayed full for --put-timeout
    503     backend_refused      the backend refuses our credentials or ACL
    503     not_ready            (readyz) the backend is unreachable or lost data

Unknown jobs are 422, not 404: the request names a job function, not a resource to fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.errors import (
    BackendUnavailableError,
    ConfigError,
    ConveyorError,
    EncodeError,
    JobArgumentsError,
    QueueFullError,
    UnknownJobError,
)
from services.names import InvalidNameError

RETRY_AFTER_S = 1
"""What 503 answers put in ``Retry-After`` (seconds): the backend usually is back quickly."""


class ApiProblem(ConveyorError):
    """A failure the API reports as it is: its status and code are on the class."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.details = details
        self.headers = dict(headers or {})


class Unauthorized(ApiProblem):
    status, code = 401, "unauthorized"


class Forbidden(ApiProblem):
    status, code = 403, "forbidden"


class JobNotFound(ApiProblem):
    status, code = 404, "job_not_found"


class NotFound(ApiProblem):
    status, code = 404, "not_found"


class NotCancellable(ApiProblem):
    status, code = 409, "not_cancellable"


class PayloadTooLarge(ApiProblem):
    status, code = 413, "payload_too_large"


class InvalidRequest(ApiProblem):
    status, code = 422, "invalid_request"


class InvalidBatch(ApiProblem):
    status, code = 422, "invalid_batch"


class NotReady(ApiProblem):
    status, code = 503, "not_ready"


@dataclass(frozen=True)
class Problem:
    """One failure, ready to answer: the JSON error body is ``{"error": body()}``."""

    status: int
    code: str
    message: str
    details: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """``{"code", "message"}``, and ``"details"`` when there are any."""
        found: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            found["details"] = self.details
        return found


_CORE: tuple[tuple[type[ConveyorError], int, str], ...] = (
    (InvalidNameError, 422, "invalid_name"),  # a ConfigError: before it
    (UnknownJobError, 422, "unknown_job"),
    (JobArgumentsError, 422, "invalid_arguments"),
    (EncodeError, 422, "invalid_arguments"),
    (QueueFullError, 503, "queue_full"),
    (BackendUnavailableError, 503, "backend_unavailable"),
    (ConfigError, 503, "backend_refused"),
)
"""Conveyor's own errors, most specific first."""


def problem_of(error: ConveyorError) -> Problem:
    """The status, code and message ``error`` is answered with."""
    if isinstance(error, ApiProblem):
        status, code, details, headers = error.status, error.code, error.details, error.headers
    else:
        status, code = next(
            ((s, c) for kind, s, c in _CORE if isinstance(error, kind)), (503, "backend_error")
        )
        details, headers = None, {}
    if status == 503:
        headers = {**headers, "Retry-After": str(RETRY_AFTER_S)}
    return Problem(status, code, _message(error), details, headers)


def _message(error: ConveyorError) -> str:
    """The error's text with its notes (e.g. how to retry safely), as one line."""
    notes = getattr(error, "__notes__", ())
    return " ".join([str(error), *notes])
