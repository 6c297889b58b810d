"""``BodyLimit``: no request body over ``max_bytes`` is read, whatever the client says.

A pure ASGI middleware (no per-request wrapping of the app beyond ``receive``): a declared
``Content-Length`` over the cap is answered 413 before anything is read; a body sent without
one (chunked) is counted as it arrives and stopped with a 413 the moment it passes the cap,
so a client can never make the service buffer more than ``max_bytes``.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer.http.errors import problem_response
from producer.http.problems import Problem


class BodyLimit:
    """Caps request bodies of the wrapped ASGI ``app`` at ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await problem_response(self._problem(declared))(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # FastAPI re-raises an HTTPException met while reading the body (any other
                # exception there becomes a 400); the error handlers render it.
                raise HTTPException(413, self._problem(seen).message)
            return message

        return counted

    def _problem(self, size: int) -> Problem:
        return Problem(
            413,
            "payload_too_large",
            f"the request body is {size} bytes or more, over the limit of {self.max_bytes} "
            "(--max-body-bytes): send fewer jobs per batch",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
