"""Pages of a queue's jobs (``QueueBrowser`` on a real ``redis-server``) and their route,
``GET /v1/queues/{queue}/jobs``, on a real ``conveyor serve``: order, paging, decoded bodies;
the use of limits (``LimitInspector``) and the Limits route."""

from __future__ import annotations

import pytest

from services.codec import encode_job
from services.job import Job
from services.limits import RateLimit, concurrency_limit
from services.protocol import QueueBrowser
from services.protocol.limit_usage import LimitUsage
from tests.redis_fixtures import MakeQueue
from tests.test_http_fixtures import StartServe, serve

pytestmark = [pytest.mark.redis]
__all__ = ["serve"]  # the fixture, imported for pytest


def put(backend: object, queue: str, n: int, delay_s: float = 0.0) -> str:
    job = Job("echo", (n,), queue=queue)
    backend.put(queue, job.id, encode_job(job), delay_s=delay_s)  # type: ignore[attr-defined]
    return job.id


def test_waiting_jobs_come_in_fetch_order_and_delayed_ones_soonest_first(
    make_queue: MakeQueue,
) -> None:
    backend = make_queue()
    assert isinstance(backend, QueueBrowser)
    waiting = [put(backend, "browsed", n) for n in range(5)]
    late = put(backend, "browsed", 99, delay_s=600)
    soon = put(backend, "browsed", 98, delay_s=60)
    # Then pages follow the order the jobs will run in
    first = backend.browse("browsed", "waiting", offset=0, limit=3)
    second = backend.browse("browsed", "waiting", offset=3, limit=3)
    assert [j.job_id for j in first + second] == waiting
    delayed = backend.browse("browsed", "delayed")
    assert [j.job_id for j in delayed] == [soon, late]
    assert delayed[0].due_at is not None and delayed[0].due_at < delayed[1].due_at  # type: ignore[operator]
    with pytest.raises(ValueError, match="no job state"):
        backend.browse("browsed", "running")


def test_the_route_decodes_a_page(serve: StartServe) -> None:
    service = serve().wait_ready()
    for n in range(3):
        assert (
            service.call("POST", "/v1/queues/listed/jobs", {"job": "echo", "args": [n]})[0] == 202
        )
    status, body = service.call("GET", "/v1/queues/listed/jobs?state=waiting&offset=1&limit=1")
    assert status == 200
    assert (body["total"], body["offset"], len(body["jobs"])) == (3, 1, 1)
    [one] = body["jobs"]
    assert (one["job"], one["args"], one["attempt"]) == ("echo", [1], 0)
    assert one["enqueued_at"] > 0
    assert service.call("GET", "/v1/queues/listed/jobs?state=running")[0] == 422


def test_limit_usage_counts_permits_held_and_the_route_shows_them(
    make_queue: MakeQueue, serve: StartServe
) -> None:
    # Given a job of a limited kind admitted (it holds one permit of "pair", 2 at once)
    backend = make_queue()
    job_id = put(backend, "limited", 1)
    [delivery] = backend.get(["limited"], max_count=1, timeout_s=5)
    assert delivery.job_id == job_id
    pair = concurrency_limit("pair", 2)  # as @registry.job(concurrency=2) declares it
    assert backend.admit(delivery, [pair])
    # Then the backend counts it, and the Limits route shows it beside the registry's terms
    assert backend.limit_usage([pair, RateLimit("smtp", 50, 1.0)]) == [
        LimitUsage(pair.key, "concurrency", 1, 0),
        LimitUsage("smtp", "rate", 0, 0),
    ]
    service = serve("--jobs", "tests.jobs_limits:registry").wait_ready()
    status, body = service.call("GET", "/v1/dashboard/limits")
    assert status == 200
    [row] = [r for r in body["limits"] if r["key"] == pair.key]
    assert (row["kind"], row["permits"], row["held"], row["jobs"]) == (
        "concurrency",
        2,
        1,
        ["pair"],
    )
