"""Unique jobs through the HTTP API (``POST /v1/queues/{queue}/jobs`` with ``unique_key``, and
jobs registered unique, alone or in a batch), in process on the suite's real redis-server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from producer.http.app import create_app
from producer.http.service import JobService
from producer.http.settings import ServeSettings
from services.backends import open_async_queue
from services.registry import Registry
from services.settings import QueueSettings
from tests.redis_fixtures import MakeQueue
from tests.test_http_fixtures import anyio_backend

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
__all__ = ["anyio_backend"]  # the fixture, imported for pytest

registry = Registry()


@registry.job(unique=True)
def rebuild(index: str) -> str:
    return index


@registry.job
def plain(n: int) -> int:
    return n


@contextlib.asynccontextmanager
async def api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API on ``url``'s backend, checking jobs against this module's registry."""
    service = JobService(open_async_queue(url, QueueSettings()), registry=registry)
    app = create_app(service, ServeSettings())
    await service.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor") as client:
            yield client
    finally:
        await service.close()


async def test_a_unique_key_stores_one_job_and_names_it(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url) as client:
        # Given a job posted with a unique key
        body = {"job": "plain", "args": [1], "unique_key": "nightly"}
        first = (await client.post("/v1/queues/default/jobs", json=body)).json()
        # When another job is posted with the key
        again = await client.post(
            "/v1/queues/default/jobs", json={"job": "plain", "args": [2], "unique_key": "nightly"}
        )
    # Then it names the first job, new: false, and one job is stored
    assert first["new"] is True
    assert again.status_code == 202
    assert again.json() == {"job_id": first["job_id"], "queue": "default", "new": False}
    assert again.headers["location"] == f"/v1/jobs/{first['job_id']}"
    assert make_queue().counts("default").waiting == 1


async def test_jobs_registered_unique_are_unique_alone_and_in_batches(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url) as client:
        one = await client.post("/v1/queues/default/jobs", json={"job": "rebuild", "args": ["a"]})
        jobs = [
            {"job": "rebuild", "args": ["a"]},
            {"job": "plain", "args": [1]},
            {"job": "rebuild", "args": ["b"]},
            {"job": "rebuild", "args": ["b"]},
        ]
        batch = (await client.post("/v1/queues/default/batches", json={"jobs": jobs})).json()
    first = one.json()["job_id"]
    answers = [(job["job_id"] == first, job["new"]) for job in batch["jobs"]]
    assert answers == [(True, False), (False, True), (False, True), (False, False)]
    assert batch["jobs"][2]["job_id"] == batch["jobs"][3]["job_id"]
    assert batch["new_count"] == 2
    assert make_queue().counts("default").waiting == 3


async def test_an_empty_or_long_unique_key_is_422(redis_url: str) -> None:
    async with api(redis_url) as client:
        for key in ("", "k" * 1025):
            body = {"job": "plain", "args": [1], "unique_key": key}
            answer = await client.post("/v1/queues/default/jobs", json=body)
            assert answer.status_code == 422, answer.text
