"""RQ's ``job_timeout`` both ways, on a real redis-server with the real ``rq`` package: an RQ
job's timeout stops it on a Conveyor worker, failed as timed out in RQ's words; a Conveyor job's
``timeout_s`` is RQ's ``timeout``, which a stock ``rq worker`` honours; bodies round-trip."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from services.backends import open_queue
from services.codec import decode_job, encode_job
from services.job import Job
from services.settings import QueueSettings
from tests.rq_helpers import conveyor_enqueue, conveyor_worker, fetch, finish, rq_queue, rq_worker

LONG_S = "600"
"""How long the slow jobs would sleep: a test that waited for one would time out."""


def test_an_rq_jobs_timeout_stops_it_on_a_conveyor_worker(redis_url: str, tmp_path: Path) -> None:
    # Given an RQ job with job_timeout=2 that would sleep for ten minutes
    marker = tmp_path / "started"
    job = rq_queue(redis_url).enqueue("tests.rq_jobs.slow", str(marker), 600, job_timeout=2)
    # When a conveyor worker drains the queue (its --job-timeout is the default, 300 s)
    finish(conveyor_worker(redis_url, "-c", "1"), timeout_s=120)
    # Then the job started, was stopped and failed in RQ as timed out, in RQ's words too
    assert marker.exists()
    assert fetch(redis_url, job.id).get_status() == JobStatus.FAILED
    failed = FailedJobRegistry("q", connection=Redis.from_url(redis_url))
    assert failed.get_job_ids() == [job.id]
    result = fetch(redis_url, job.id).latest_result()
    assert result is not None and result.exc_string is not None
    assert "timed out after 2 s" in result.exc_string
    assert "JobTimeoutException: Task exceeded maximum timeout value (2 seconds)" in (
        result.exc_string
    )


def test_a_conveyor_jobs_timeout_is_honoured_by_a_stock_rq_worker(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a job put by `conveyor enqueue --timeout 1` that would sleep for ten minutes
    marker = tmp_path / "started"
    job_id = conveyor_enqueue(
        redis_url, "--timeout", "1", "tests.rq_jobs.slow", str(marker), LONG_S
    )
    # Then RQ's job carries the timeout in its own field
    assert fetch(redis_url, job_id).timeout == 1
    # When a stock rq worker drains the queue
    rq_worker(redis_url, "-S", "json")
    # Then it stopped the job at its timeout and failed it
    assert marker.exists()
    found = fetch(redis_url, job_id)
    assert found.get_status() == JobStatus.FAILED
    result = found.latest_result()
    assert result is not None and result.exc_string is not None
    assert "JobTimeoutException" in result.exc_string


def test_timeouts_cross_the_rq_mapping_exactly(redis_url: str) -> None:
    # Given a Conveyor job with a fractional timeout, one without, and RQ jobs with RQ's
    # default timeout and with no limit (-1)
    backend = open_queue("rq+" + redis_url, QueueSettings())
    timed = Job("tests.rq_jobs.add", (1, 2), queue="q", timeout_s=1.5)
    plain = Job("tests.rq_jobs.add", (3, 4), queue="q")
    try:
        backend.put_many("q", [(timed.id, encode_job(timed)), (plain.id, encode_job(plain))])
        stamped = rq_queue(redis_url).enqueue("tests.rq_jobs.add", 5, 6)
        unlimited = rq_queue(redis_url).enqueue("tests.rq_jobs.add", 7, 8, job_timeout=-1)
        # When a consumer takes them
        found = {d.job_id: d.body for d in backend.get(["q"], max_count=4, timeout_s=1)}
    finally:
        backend.close()
    # Then Conveyor's bodies come back byte for byte, RQ's timeout in whole seconds up
    assert found[timed.id] == encode_job(timed) and found[plain.id] == encode_job(plain)
    assert fetch(redis_url, timed.id).timeout == 2
    # And an RQ job's timeout is the job's, unless RQ's -1 (no limit)
    assert decode_job(found[stamped.id]).timeout_s == 180
    assert decode_job(found[unlimited.id]).timeout_s is None
