"""The charts' history lives in Redis, not in the service: what one ``conveyor serve`` sampled,
another one started afterwards (not sampling itself) draws, on a real ``redis-server``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_http_fixtures import StartServe, serve, wait_for

pytestmark = [pytest.mark.redis]
__all__ = ["serve"]  # the fixture, imported for pytest


def test_a_restarted_service_draws_what_the_first_one_sampled(serve: StartServe) -> None:
    # Given a service that sampled a backlog of 4 jobs, then stopped
    first = serve("--history-interval", "0.2").wait_ready()
    for n in range(4):
        assert first.call("POST", "/v1/queues/kept/jobs", {"job": "echo", "args": [n]})[0] == 202

    def backlog(service: Any) -> list[Any]:
        return service.call("GET", "/v1/dashboard?queue=kept")[1]["charts"]["hour"]["backlog"]  # type: ignore[no-any-return]

    wait_for("a sample of the backlog", lambda: 4.0 in backlog(first))
    assert first.stop() == 0
    # When another service starts that samples nothing
    second = serve("--history-interval", "0").wait_ready()
    # Then its hour chart still holds the backlog, and its day chart too
    assert 4.0 in backlog(second)
    day = second.call("GET", "/v1/dashboard?queue=kept")[1]["charts"]["day"]["backlog"]
    assert 4.0 in day
