"""``ReadOnlyBrowser``: with ``--dashboard-read-only``, the API refuses state changes from a
browser, so the dashboard (and anything typed in its console) can only look.

A request is a browser's when it carries ``Sec-Fetch-Site`` (every current browser sends it
on every request, and page scripts cannot remove it) or ``X-Conveyor-Client: dashboard`` (the
dashboard's own mark). Such a request with a method that changes state (anything but GET,
HEAD, OPTIONS) is answered 403 before any route runs. Scripts and the CLI (no such headers)
keep the full API: the bearer token stays the access control; this mode keeps clicks from
changing anything.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from producer.http.errors import problem_response
from producer.http.problems import Forbidden, problem_of

READS = frozenset({"GET", "HEAD", "OPTIONS"})
DASHBOARD_MARK = (b"x-conveyor-client", b"dashboard")


def from_browser(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when ``headers`` (an ASGI scope's) mark a request a browser or the dashboard sent."""
    return any(
        name == b"sec-fetch-site" or (name, value) == DASHBOARD_MARK for name, value in headers
    )


class ReadOnlyBrowser:
    """ASGI middleware: 403 for a browser's state change, everything else passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in READS
            and from_browser(scope["headers"])
        ):
            problem = problem_of(Forbidden("the dashboard is read-only (--dashboard-read-only)"))
            await problem_response(problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
