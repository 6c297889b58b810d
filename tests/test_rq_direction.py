"""RQ interoperability, both directions, on a real redis-server with the real ``rq`` package:
RQ producers -> ``conveyor worker`` (every pool kind), Conveyor producers -> stock
``rq worker``, the allow-list, the serializer opt-in, and ``rq info``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from producer import Producer
from services.backends import open_queue
from services.backends.rq.mapping import PICKLE_REFUSED
from services.settings import QueueSettings
from tests.rq_helpers import (
    BIN,
    ROOT,
    conveyor_enqueue,
    conveyor_worker,
    fetch,
    finish,
    rq_queue,
    rq_worker,
)
from tests.rq_jobs import registry


@pytest.mark.parametrize("pool", ["processes", "threads", "asyncio"])
def test_rq_jobs_run_on_a_conveyor_worker_and_rq_sees_the_truth(
    redis_url: str, pool: str, tmp_path: Path
) -> None:
    # Given jobs enqueued with plain rq: allowed by qualname and by rq_name, one that raises,
    # and one whose function path is not registered (its module records being imported)
    queue = rq_queue(redis_url)
    added = queue.enqueue("tests.rq_jobs.add", 1, 2)
    resized = queue.enqueue("myapp.jobs.resize", "cat.jpg", 640)
    boom = queue.enqueue("tests.rq_jobs.boom", "bad input")
    refused = queue.enqueue("tests.rq_forbidden.run")
    marker = tmp_path / "imported"
    # When a conveyor worker of that pool kind drains the queue
    env = {"CONVEYOR_RQ_IMPORT_MARKER": str(marker)}
    finish(conveyor_worker(redis_url, "--pool", pool, "-c", "1", env=env))
    # Then RQ reads the results through its own API
    assert fetch(redis_url, added.id).get_status() == JobStatus.FINISHED
    assert fetch(redis_url, added.id).return_value() == 3
    latest = fetch(redis_url, resized.id).latest_result()
    assert latest is not None and latest.return_value == "cat.jpg@640"
    # And the failures are in RQ's FailedJobRegistry with their reasons
    failed = FailedJobRegistry("q", connection=Redis.from_url(redis_url))
    assert set(failed.get_job_ids()) == {boom.id, refused.id}
    boom_result = fetch(redis_url, boom.id).latest_result()
    assert boom_result is not None and boom_result.exc_string is not None
    assert (
        "Traceback" in boom_result.exc_string
        and "RuntimeError: bad input" in boom_result.exc_string
    )
    refused_result = fetch(redis_url, refused.id).latest_result()
    assert refused_result is not None and refused_result.exc_string is not None
    assert refused_result.exc_string.startswith("not an allowed job")
    # And the refused job's module was never imported
    assert not marker.exists()


def test_conveyor_producers_feed_a_stock_rq_worker(redis_url: str) -> None:
    # Given jobs enqueued by Producer.enqueue and by `conveyor enqueue`, by their RQ paths
    producer = Producer(open_queue("rq+" + redis_url), registry=registry, name="q")
    first = producer.enqueue("tests.rq_jobs.add", 2, 3)
    second_id = conveyor_enqueue(
        redis_url, "--jobs", "tests.rq_jobs:registry", "tests.rq_jobs.add", "4", "5"
    )
    # When a stock rq worker drains the queue
    rq_worker(redis_url, "-S", "json")
    # Then both ran to completion in RQ, and Conveyor reads their results too
    assert fetch(redis_url, first.id).return_value() == 5
    assert fetch(redis_url, second_id).return_value() == 9
    assert producer.result(first.id, timeout=5) == 5


def test_pickled_rq_jobs_are_refused_unread_unless_the_operator_opts_in(redis_url: str) -> None:
    # Given a job enqueued with RQ's default serializer (pickle)
    pickling = Queue("q", connection=Redis.from_url(redis_url))
    pickled = pickling.enqueue("tests.rq_jobs.add", 1, 1)
    # When a consumer on the default (JSON) URL takes jobs
    plain = open_queue("rq+" + redis_url, QueueSettings())
    try:
        assert plain.get(["q"], max_count=1, timeout_s=0.2) == []
    finally:
        plain.close()
    # Then the first failed unread, saying why and how to opt in
    result = fetch(redis_url, pickled.id).latest_result()
    assert result is not None and result.exc_string == PICKLE_REFUSED
    # And a consumer that opted in with ?serializer=pickle reads the next one
    again = pickling.enqueue("tests.rq_jobs.add", 2, 2)
    opted = open_queue("rq+" + redis_url + "?serializer=pickle", QueueSettings())
    try:
        [delivery] = opted.get(["q"], max_count=1, timeout_s=1)
    finally:
        opted.close()
    assert delivery.job_id == again.id and b'"args":[2,2]' in delivery.body


def test_rq_info_lists_conveyor_workers_and_depths(redis_url: str) -> None:
    # Given two waiting RQ jobs and a Conveyor consumer serving the queue
    queue = rq_queue(redis_url)
    queue.enqueue("tests.rq_jobs.add", 1, 2)
    queue.enqueue("tests.rq_jobs.add", 3, 4)
    consumer = open_queue("rq+" + redis_url, QueueSettings())
    try:
        [delivery] = consumer.get(["q"], max_count=1, timeout_s=1)
        # When RQ's own CLI reports
        info = subprocess.run(
            [str(BIN / "rq"), "info", "-u", redis_url],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    finally:
        consumer.close()
    # Then it lists the Conveyor worker on q, one job waiting and one executing
    assert consumer.consumer_id in info and "1 workers" in info
    assert "q" in info and "1, 1 executing" in info
    assert delivery.queue == "q"
    # And `conveyor status` on the rq URL shows the RQ queue's depths too
    status = subprocess.run(
        [str(BIN / "conveyor"), "status", "--json", "--url", "rq+" + redis_url],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert '"q"' in status and '"waiting": 1' in status
