"""``DirectRoute``: a route whose endpoint takes the request and reads everything itself.

FastAPI's request handling solves every route's parameters and dependencies on every request;
even for an endpoint whose only parameter is the request, that costs ~30 us, a sixth of a
one-job submission. The submission routes read their path, header and body themselves
(``bodies``), so they are added with this route class (FastAPI's ``route_class_override``,
the documented way to customise request handling): their handler calls the endpoint with the
request and nothing else. The OpenAPI document is generated from the route as for any other.

What this skips, the endpoint does: dependencies are **not** run, so a direct endpoint calls
``auth.Access.check`` itself before anything else (``routes.jobs``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response


class DirectRoute(APIRoute):
    """An ``APIRoute`` that hands the request straight to its endpoint (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = cast(Callable[[Request], Awaitable[Response]], self.endpoint)

        async def handle(request: Request) -> Response:
            return await endpoint(request)

        return handle
