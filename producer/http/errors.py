"""One JSON error body for every failure: ``{"error": {"code", "message", "details"?}}``.

``install_error_handlers`` makes FastAPI answer with it for Conveyor's errors
(``problems.problem_of``), for requests that break the schema (422, or 400 when the body is
not JSON at all) and for Starlette's own errors (404 no such path, 405 wrong method, 413 from
``limits``), keeping their headers (``Allow``, ``WWW-Authenticate``, ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from producer.http.problems import Problem, problem_of
from services.errors import ConveyorError

_STARLETTE_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    400: "bad_request",
}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON (orjson: several times faster than the stdlib's encoder)."""
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def problem_response(problem: Problem) -> Response:
    """The error body and headers of ``problem``."""
    return json_response({"error": problem.body()}, problem.status, problem.headers)


async def _conveyor_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConveyorError)
    return problem_response(problem_of(exc))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem_response(Problem(400, "malformed_json", "the request body is not JSON"))
    details = [
        {"loc": list(error.get("loc", ())), "message": error.get("msg", ""), "type": error["type"]}
        for error in errors
    ]
    first = details[0] if details else {"loc": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['message']}" if where else str(first["message"])
    return problem_response(Problem(422, "invalid_request", message, details))


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "http_error")
    problem = Problem(exc.status_code, code, str(exc.detail), headers=exc.headers or {})
    return problem_response(problem)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error ``app`` meets on purpose with the one JSON error body."""
    app.add_exception_handler(ConveyorError, _conveyor_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _starlette_error)
