"""The HTTP API in-process (httpx's ASGI transport) on a real redis-server: every route, every
error, idempotency, batches all or nothing, cancelling, authentication and the body cap.

Counts are read with the blocking Redis backend beside the service, so each claim ("one job",
"nothing enqueued") is checked in the backend, not only in the answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.codec import decode_job
from services.protocol import Completion, QueueCounts
from tests.redis_fixtures import MakeQueue, free_port
from tests.test_http_fixtures import TOKEN, anyio_backend, api, error_code

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
__all__ = ["anyio_backend"]  # the fixture, imported for pytest


def job(name: str = "echo", *args: object, **more: object) -> dict[str, object]:
    return {"job": name, "args": list(args), **more}


# -- submitting one job ------------------------------------------------------------------------
async def test_a_job_is_put_and_found_at_its_location(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url) as client:
        # When a job is posted
        answer = await client.post("/v1/queues/default/jobs", json=job("add", 1, 2))
        # Then it is accepted, with its id, and its location reads it
        assert answer.status_code == 202
        body = answer.json()
        assert body == {"job_id": body["job_id"], "queue": "default", "new": True}
        assert answer.headers["location"] == f"/v1/jobs/{body['job_id']}"
        found = await client.get(answer.headers["location"])
        assert found.json() == {
            "job_id": body["job_id"],
            "status": "queued",
            "attempts": 0,
            "error": None,
            "result": None,
        }
    # And the backend holds that very job
    queue = make_queue()
    [delivery] = queue.get(["default"], timeout_s=1)
    stored = decode_job(delivery.body)
    assert (stored.id, stored.name, stored.args) == (body["job_id"], "add", (1, 2))


async def test_kwargs_a_chosen_id_and_a_delay(redis_url: str, make_queue: MakeQueue) -> None:
    async with api(redis_url) as client:
        body = job("echo", 1, kwargs={"b": [2]}, job_id="report-7", delay_s=30)
        answer = await client.post("/v1/queues/reports/jobs", json=body)
        assert answer.status_code == 202
        assert answer.json()["job_id"] == "report-7"
        assert (await client.get("/v1/jobs/report-7")).json()["status"] == "scheduled"
    assert make_queue().counts("reports") == QueueCounts(delayed=1)


async def test_the_same_idempotency_key_twice_stores_one_job(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url) as client:
        # Given a request with a key that is no job id, sent twice (a client retrying)
        headers = {"Idempotency-Key": "order 1234 / attempt"}
        first = await client.post("/v1/queues/default/jobs", json=job(), headers=headers)
        again = await client.post("/v1/queues/default/jobs", json=job(), headers=headers)
        # Then both name the same job, the second says it was not new
        assert first.json()["new"] is True
        assert again.json() == {**first.json(), "new": False}
        # And a key that is a valid job id is the id
        named = await client.post(
            "/v1/queues/default/jobs", json=job(), headers={"Idempotency-Key": "order-1235"}
        )
        assert named.json()["job_id"] == "order-1235"
    # And the backend holds two jobs, not three
    assert make_queue().counts("default").waiting == 2


async def test_a_repeated_job_id_stores_one_job_even_once_it_ran(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        await client.post("/v1/queues/default/jobs", json=job(job_id="once"))
        [delivery] = queue.get(["default"], timeout_s=1)
        queue.ack([Completion(delivery, b"1")])
        # When the same id is posted after the job finished
        again = await client.post("/v1/queues/default/jobs", json=job(job_id="once"))
        # Then nothing is stored
        assert again.json()["new"] is False
    assert queue.counts("default") == QueueCounts(done=1)


async def test_a_job_id_and_a_key_that_disagree_are_refused(redis_url: str) -> None:
    async with api(redis_url) as client:
        answer = await client.post(
            "/v1/queues/default/jobs", json=job(job_id="a"), headers={"Idempotency-Key": "b"}
        )
        assert answer.status_code == 422
        assert error_code(answer) == "invalid_request"


async def test_jobs_stored_are_told_to_the_enqueued_hook(redis_url: str) -> None:
    told: list[tuple[str, str, int]] = []

    def on_enqueued(queue: str, name: str, count: int) -> None:
        told.append((queue, name, count))

    async with api(redis_url, on_enqueued=on_enqueued) as client:
        # A job, the same job again (not stored), a batch of three, a refused job
        await client.post("/v1/queues/q/jobs", json=job("add", 1, 2, job_id="one"))
        await client.post("/v1/queues/q/jobs", json=job("add", 1, 2, job_id="one"))
        body = {"jobs": [job("add", 1, 2), job("echo"), job("add", 3, 4)]}
        await client.post("/v1/queues/b/batches", json=body)
        await client.post("/v1/queues/q/jobs", json=job("nope"))
    # Then only what was stored is told, per queue and job name
    assert told == [("q", "add", 1), ("b", "add", 2), ("b", "echo", 1)]


# -- errors of a submission --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (job("no_such_job"), 422, "unknown_job"),
        (job("add", 1, 2, 3), 422, "invalid_arguments"),
        (job("add", 1, kwargs={"c": 2}), 422, "invalid_arguments"),
        (job("echo", job_id="not an id"), 422, "invalid_request"),
        ({"job": "echo", "argz": []}, 422, "invalid_request"),
        ({"args": [1]}, 422, "invalid_request"),
        (job("echo", delay_s=-1), 422, "invalid_request"),
        ([1, 2], 422, "invalid_request"),
    ],
)
async def test_bad_jobs_get_a_precise_4xx_and_nothing_is_stored(
    redis_url: str, make_queue: MakeQueue, body: object, status: int, code: str
) -> None:
    async with api(redis_url) as client:
        answer = await client.post("/v1/queues/default/jobs", json=body)
    assert (answer.status_code, error_code(answer)) == (status, code)
    assert make_queue().counts("default") == QueueCounts()


async def test_malformed_json_is_400_and_any_content_type_is_read(redis_url: str) -> None:
    async with api(redis_url) as client:
        broken = await client.post("/v1/queues/default/jobs", content=b'{"job": ')
        assert (broken.status_code, error_code(broken)) == (400, "malformed_json")
        empty = await client.post("/v1/queues/default/jobs", content=b"")
        assert (empty.status_code, error_code(empty)) == (400, "malformed_json")
        # A JSON body sent as a form (curl -d) is still read as JSON
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        sent = await client.post("/v1/queues/default/jobs", content=b'{"job":"echo"}', headers=form)
        assert sent.status_code == 202


async def test_invalid_queue_names_and_job_ids_are_422(redis_url: str) -> None:
    async with api(redis_url) as client:
        bad_queue = await client.post("/v1/queues/-dash-first/jobs", json=job())
        assert (bad_queue.status_code, error_code(bad_queue)) == (422, "invalid_name")
        for path in ("/v1/jobs/a%20b", "/v1/queues/%2Ax", "/v1/queues/a%20b/dead-letters"):
            answer = await client.get(path)
            assert (answer.status_code, error_code(answer)) == (422, "invalid_request"), path
        too_long = await client.post(
            "/v1/queues/default/jobs", json=job(), headers={"Idempotency-Key": "k" * 256}
        )
        assert (too_long.status_code, error_code(too_long)) == (422, "invalid_request")


async def test_bodies_over_the_cap_are_413_declared_or_streamed(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url, max_body_bytes=2048) as client:
        big = job("echo", "x" * 4000)
        declared = await client.post("/v1/queues/default/jobs", json=big)
        assert (declared.status_code, error_code(declared)) == (413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b" " * 1024

        streamed = await client.post("/v1/queues/default/jobs", content=chunks())
        assert (streamed.status_code, error_code(streamed)) == (413, "payload_too_large")
    assert make_queue().counts("default") == QueueCounts()


async def test_a_job_over_its_own_cap_is_413(redis_url: str) -> None:
    async with api(redis_url, max_body_bytes=4 * 1024 * 1024) as client:
        answer = await client.post("/v1/queues/default/jobs", json=job("echo", "x" * 1_100_000))
        assert (answer.status_code, error_code(answer)) == (413, "payload_too_large")


async def test_unknown_paths_and_methods_answer_in_json(redis_url: str) -> None:
    async with api(redis_url) as client:
        missing = await client.get("/v2/nothing")
        assert (missing.status_code, error_code(missing)) == (404, "not_found")
        wrong = await client.put("/v1/jobs/x")
        assert (wrong.status_code, error_code(wrong)) == (405, "method_not_allowed")
        assert "GET" in wrong.headers["allow"]


async def test_without_a_registry_any_job_name_is_accepted(redis_url: str) -> None:
    async with api(redis_url, with_registry=False) as client:
        answer = await client.post("/v1/queues/default/jobs", json=job("whatever", 1, 2, 3))
        assert answer.status_code == 202


# -- batches -----------------------------------------------------------------------------------
async def test_a_batch_is_put_whole(redis_url: str, make_queue: MakeQueue) -> None:
    async with api(redis_url) as client:
        jobs = [job("add", n, n) for n in range(5)] + [job("echo", job_id="mine")]
        answer = await client.post("/v1/queues/batch/batches", json={"jobs": jobs})
        assert answer.status_code == 202
        body = answer.json()
        assert (body["queue"], body["count"], body["new_count"]) == ("batch", 6, 6)
        assert body["jobs"][-1] == {"job_id": "mine", "new": True}
    assert make_queue().counts("batch").waiting == 6


async def test_a_batch_with_one_bad_job_puts_nothing(redis_url: str, make_queue: MakeQueue) -> None:
    async with api(redis_url) as client:
        jobs = [job("add", 1, 2), job("nope"), job("add", 1), job("echo")]
        answer = await client.post("/v1/queues/batch/batches", json={"jobs": jobs})
        assert (answer.status_code, error_code(answer)) == (422, "invalid_batch")
        details = answer.json()["error"]["details"]
        assert [(d["index"], d["code"]) for d in details] == [
            (1, "unknown_job"),
            (2, "invalid_arguments"),
        ]
    assert make_queue().counts("batch") == QueueCounts()


async def test_a_batch_retried_with_its_key_stores_nothing_twice(
    redis_url: str, make_queue: MakeQueue
) -> None:
    async with api(redis_url) as client:
        headers = {"Idempotency-Key": "nightly-2026-11-29"}
        body = {"jobs": [job("add", n, 1) for n in range(3)], "delay_s": 60}
        first = await client.post("/v1/queues/batch/batches", json=body, headers=headers)
        again = await client.post("/v1/queues/batch/batches", json=body, headers=headers)
        assert first.json()["new_count"] == 3
        assert again.json()["new_count"] == 0
        assert [j["job_id"] for j in again.json()["jobs"]] == [
            j["job_id"] for j in first.json()["jobs"]
        ]
    assert make_queue().counts("batch") == QueueCounts(delayed=3)


async def test_a_batch_over_the_limit_is_422(redis_url: str) -> None:
    async with api(redis_url, max_batch=3) as client:
        answer = await client.post("/v1/queues/q/batches", json={"jobs": [job()] * 4})
        assert (answer.status_code, error_code(answer)) == (422, "invalid_request")
        empty = await client.post("/v1/queues/q/batches", json={"jobs": []})
        assert (empty.status_code, error_code(empty)) == (422, "invalid_request")


# -- reading and cancelling jobs ---------------------------------------------------------------
async def test_a_finished_jobs_result_is_decoded(redis_url: str, make_queue: MakeQueue) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        await client.post("/v1/queues/default/jobs", json=job("add", 2, 3, job_id="sum"))
        [delivery] = queue.get(["default"], timeout_s=1)
        queue.ack([Completion(delivery, b'{"total": 5}')])
        found = await client.get("/v1/jobs/sum")
    assert found.json() == {
        "job_id": "sum",
        "status": "done",
        "attempts": 1,
        "error": None,
        "result": {"total": 5},
    }


async def test_an_unknown_job_is_404(redis_url: str) -> None:
    async with api(redis_url) as client:
        for method in ("GET", "DELETE"):
            answer = await client.request(method, "/v1/jobs/never-put")
            assert (answer.status_code, error_code(answer)) == (404, "job_not_found")


async def test_cancel_a_queued_and_a_delayed_job(redis_url: str, make_queue: MakeQueue) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        await client.post("/v1/queues/default/jobs", json=job(job_id="now"))
        await client.post("/v1/queues/default/jobs", json=job(job_id="later", delay_s=60))
        await client.post("/v1/queues/default/jobs", json=job(job_id="kept"))
        for job_id in ("now", "later"):
            answer = await client.delete(f"/v1/jobs/{job_id}")
            assert answer.json() == {"job_id": job_id, "cancelled": True, "status": "dead"}
            found = (await client.get(f"/v1/jobs/{job_id}")).json()
            assert (found["status"], found["error"]) == ("dead", "cancelled")
        # A second cancel is too late: the job is dead already
        again = await client.delete("/v1/jobs/now")
        assert (again.status_code, error_code(again)) == (409, "not_cancellable")
    # Then the backend delivers only the job left, and counts the two dead once each
    assert queue.counts("default") == QueueCounts(waiting=1, dead=2)
    assert [d.job_id for d in queue.get(["default"], max_count=5, timeout_s=0.5)] == ["kept"]


async def test_cancel_is_too_late_for_a_running_or_finished_job(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        await client.post("/v1/queues/default/jobs", json=job(job_id="busy"))
        [delivery] = queue.get(["default"], timeout_s=1)
        running = await client.delete("/v1/jobs/busy")
        assert (running.status_code, error_code(running)) == (409, "not_cancellable")
        assert running.json()["error"]["details"]["status"] == "running"
        queue.ack([Completion(delivery)])
        done = await client.delete("/v1/jobs/busy")
        assert done.json()["error"]["details"]["status"] == "done"
    assert queue.counts("default") == QueueCounts(done=1)


async def test_abort_cancels_a_waiting_job_and_asks_a_running_ones_worker_to_stop(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        await client.post("/v1/queues/default/jobs", json=job(job_id="waits"))
        await client.post("/v1/queues/default/jobs", json=job(job_id="runs"))
        [waits] = queue.get(["default"], timeout_s=1)  # FIFO: "waits" is the one taken
        # When both are aborted: the taken one is running, the other waits
        taken = await client.post(f"/v1/jobs/{waits.job_id}/abort")
        other = "runs" if waits.job_id == "waits" else "waits"
        waiting = await client.post(f"/v1/jobs/{other}/abort")
        # Then the waiting one is cancelled, and the running one's worker is asked to stop it
        assert (waiting.status_code, waiting.json()["status"]) == (202, "dead")
        assert (taken.status_code, taken.json()["status"]) == (202, "running")
        assert queue.aborted([waits]) == [waits]
        # And a finished job is too late
        queue.dead_letter(waits, "aborted by request")
        late = await client.post(f"/v1/jobs/{waits.job_id}/abort")
        assert (late.status_code, error_code(late)) == (409, "not_cancellable")
        assert late.json()["error"]["details"]["status"] == "dead"
        unknown = await client.post("/v1/jobs/nobody/abort")
        assert (unknown.status_code, error_code(unknown)) == (404, "job_not_found")
    assert queue.counts("default") == QueueCounts(dead=2)


# -- queues and dead letters -------------------------------------------------------------------
async def test_queues_list_every_queue_with_its_counts(redis_url: str) -> None:
    async with api(redis_url) as client:
        await client.post("/v1/queues/b/jobs", json=job())
        await client.post("/v1/queues/a/jobs", json=job(delay_s=60))
        listed = (await client.get("/v1/queues")).json()["queues"]
        one = (await client.get("/v1/queues/never-used")).json()
    zeros = {"waiting": 0, "delayed": 0, "in_flight": 0, "done": 0, "dead": 0}
    assert listed == [
        {"name": "a", **zeros, "delayed": 1},
        {"name": "b", **zeros, "waiting": 1},
    ]
    assert one == {"name": "never-used", **zeros}


async def test_dead_letters_are_listed_requeued_and_deleted(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    async with api(redis_url) as client:
        ids = ["d1", "d2", "d3"]
        body = {"jobs": [job("add", n, n, job_id=i) for n, i in enumerate(ids)]}
        await client.post("/v1/queues/q/batches", json=body)
        for delivery in queue.get(["q"], max_count=3, timeout_s=1):
            queue.dead_letter(delivery, "Traceback ...\nValueError: boom")
        # Listed newest first, with the job each held
        letters = (await client.get("/v1/queues/q/dead-letters?limit=2")).json()
        assert [(x["job_id"], x["job"], x["args"]) for x in letters["dead_letters"]] == [
            ("d3", "add", [2, 2]),
            ("d2", "add", [1, 1]),
        ]
        assert letters["dead_letters"][0]["reason"].endswith("ValueError: boom")
        # One requeued by id, one deleted by id, the last deleted with the collection
        requeued = await client.post("/v1/queues/q/dead-letters/requeue", json={"job_ids": ["d1"]})
        assert requeued.json() == {"requeued": 1}
        assert (await client.delete("/v1/queues/q/dead-letters/d2")).json() == {"deleted": 1}
        gone = await client.delete("/v1/queues/q/dead-letters/d2")
        assert (gone.status_code, error_code(gone)) == (404, "not_found")
        assert (await client.delete("/v1/queues/q/dead-letters")).json() == {"deleted": 1}
        assert (await client.get("/v1/queues/q/dead-letters")).json()["dead_letters"] == []
    assert [d.job_id for d in queue.get(["q"], timeout_s=1)] == ["d1"]


# -- authentication ----------------------------------------------------------------------------
async def test_with_a_token_every_route_but_health_needs_it(redis_url: str) -> None:
    async with api(redis_url, token=TOKEN) as client:
        protected = [
            ("POST", "/v1/queues/q/jobs"),
            ("POST", "/v1/queues/q/batches"),
            ("GET", "/v1/jobs/j"),
            ("DELETE", "/v1/jobs/j"),
            ("GET", "/v1/queues"),
            ("GET", "/v1/queues/q"),
            ("GET", "/v1/queues/q/dead-letters"),
            ("POST", "/v1/queues/q/dead-letters/requeue"),
            ("DELETE", "/v1/queues/q/dead-letters"),
            ("DELETE", "/v1/queues/q/dead-letters/j"),
        ]
        for method, path in protected:
            missing = await client.request(method, path, json=job())
            assert (missing.status_code, error_code(missing)) == (401, "unauthorized"), path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = await client.request(
                method, path, json=job(), headers={"Authorization": "Bearer not-the-token"}
            )
            assert wrong.status_code == 401, (method, path)
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            assert "not-the-token" not in wrong.text
        basic = await client.get("/v1/queues", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            await client.post("/v1/queues/q/jobs", json=job(), headers=right)
        ).status_code == 202
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_without_a_token_nothing_asks_for_one(redis_url: str) -> None:
    async with api(redis_url) as client:
        answer = await client.get("/v1/queues")
        assert answer.status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "securitySchemes" not in schema.get("components", {})


# -- health and an unavailable backend ---------------------------------------------------------
async def test_health_and_readiness(redis_url: str) -> None:
    async with api(redis_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert any("no persistence" in text for text in ready["warnings"])


async def test_an_unreachable_backend_is_503_with_retry_after() -> None:
    # Given the service pointed at a port nobody listens on
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with api(url, op_timeout_s=0.5, put_timeout_s=0.2) as client:
        for method, path in (("POST", "/v1/queues/q/jobs"), ("GET", "/v1/jobs/x")):
            answer = await client.request(method, path, json=job())
            assert (answer.status_code, error_code(answer)) == (503, "backend_unavailable")
            assert answer.headers["retry-after"] == "1"
        assert "Idempotency-Key" in (await client.post("/v1/queues/q/jobs", json=job())).text
        not_ready = await client.get("/readyz")
        assert (not_ready.status_code, error_code(not_ready)) == (503, "not_ready")
        assert (await client.get("/healthz")).status_code == 200


async def test_the_schema_documents_every_route(redis_url: str) -> None:
    async with api(redis_url) as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) == {
        "/v1/queues/{queue}/jobs",
        "/v1/queues/{queue}/batches",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/abort",
        "/v1/queues",
        "/v1/queues/{queue}",
        "/v1/queues/{queue}/dead-letters",
        "/v1/queues/{queue}/dead-letters/requeue",
        "/v1/queues/{queue}/dead-letters/{job_id}",
        "/healthz",
        "/readyz",
    }
    submit = paths["/v1/queues/{queue}/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SubmitIn"
    }
    assert {p["name"] for p in submit["parameters"]} == {"queue", "Idempotency-Key"}
    assert {"JobIn", "SubmitIn", "BatchIn"} <= set(schema["components"]["schemas"])
