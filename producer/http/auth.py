"""Bearer tokens: every route but the health checks needs ``Authorization: Bearer <token>``.

``access(token)`` says how a route is protected: ``dependencies`` for ordinary routes (a
FastAPI dependency, so the OpenAPI document declares the scheme and clients and schemathesis
know to send it), and ``check`` for direct routes (``direct``), which run no dependencies and
call it themselves. Both compare in constant time (``hmac.compare_digest``). A missing or
wrong token is a 401 with ``WWW-Authenticate``; the token a client sent never appears in an
answer or a log line (uvicorn's access log shows the request line, never headers).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.params import Depends as Dependency
from fastapi.security import HTTPBearer

from producer.http.problems import Unauthorized

_CHALLENGE = 'Bearer realm="conveyor"'
_SCHEME = HTTPBearer(auto_error=False, description="The token given to `conveyor serve`.")


@dataclass(frozen=True)
class Access:
    """How routes are protected: ``dependencies`` for ordinary routes; ``check(request)`` for
    direct ones, which must call it before anything else."""

    dependencies: list[Dependency]
    check: Callable[[Request], None]


def access(token: str | None) -> Access:
    """Routes open to all (``token`` None), or only to requests bearing ``token``."""
    if token is None:
        return Access([], _open)
    expected = token.strip().encode()

    def check(request: Request) -> None:
        verify(request.headers.get("authorization"), expected)

    async def require_token(request: Request, _: object = Depends(_SCHEME)) -> None:
        check(request)  # the scheme's parameter declares it in the OpenAPI document

    return Access([Depends(require_token)], check)


def verify(header: str | None, expected: bytes) -> None:
    """Let ``Authorization: <header>`` through if it bears ``expected``; else ``Unauthorized``."""
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized(
            "this service needs a bearer token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    if not hmac.compare_digest(credentials.strip().encode(), expected):
        raise Unauthorized(
            "the bearer token is not this service's",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )


def _open(request: Request) -> None:
    """No token configured: every request may pass."""
