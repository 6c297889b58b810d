"""Bearer tokens: every route but the health checks needs ``Authorization: Bearer <token>``.

``bearer_guard(token)`` is a FastAPI dependency (so the OpenAPI document declares the scheme
and clients and schemathesis know to send it). Tokens are compared in constant time
(``hmac.compare_digest``). A missing or wrong token is a 401 with ``WWW-Authenticate``; the
token a client sent never appears in an answer or a log line (uvicorn's access log shows the
request line, never headers).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producer.http.problems import Unauthorized

_CHALLENGE = 'Bearer realm="conveyor"'


def bearer_guard(token: str) -> Callable[..., Awaitable[None]]:
    """A dependency that lets a request through only with ``token`` as its bearer token."""
    expected = token.strip().encode()
    scheme = HTTPBearer(auto_error=False, description="The token given to `conveyor serve`.")

    async def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise Unauthorized(
                "this service needs a bearer token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise Unauthorized(
                "the bearer token is not this service's",
                headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
            )

    return require_token
