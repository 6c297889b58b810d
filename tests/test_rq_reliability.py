"""The rq backend beyond RQ's defaults, on a real redis-server with real ``conveyor worker``
processes: a SIGKILLed consumer's job leaves ``StartedJobRegistry`` within seconds (handed to
the next consumer), a graceful stop hands unfinished jobs back, and RQ's ``Retry``,
``result_ttl`` and ``failure_ttl`` govern what Conveyor does with RQ's jobs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from redis import Redis
from rq import Retry
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from services.backends import open_queue
from services.codec import decode_job, encode_job
from services.protocol import Completion
from services.settings import QueueSettings
from tests.rq_helpers import conveyor_worker, fetch, finish, poll, rq_queue


def test_a_sigkilled_consumers_job_goes_to_the_next_consumer_within_seconds(
    redis_url: str, tmp_path: Path
) -> None:
    # Given an RQ job running on a conveyor worker with a 1 s lease, held in StartedJobRegistry
    marker = tmp_path / "started"
    job = rq_queue(redis_url).enqueue("tests.rq_jobs.slow", str(marker), 30)
    worker = conveyor_worker(redis_url, "--lease", "1", "-c", "1", burst=False)
    started = StartedJobRegistry("q", connection=Redis.from_url(redis_url))
    try:
        poll(marker.exists, timeout_s=30, what="the job to start")
        assert started.get_job_ids(cleanup=False) == [job.id]
        # When the whole worker tree is SIGKILLed mid-job
        os.killpg(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.communicate()
    # Then the next consumer (lease 1 s) gets it back, once redelivered, within seconds
    consumer = open_queue("rq+" + redis_url, QueueSettings(lease_s=1.0))
    try:
        deliveries = poll(
            lambda: consumer.get(["q"], max_count=1, timeout_s=0.2),
            timeout_s=15,
            what="the job to be recovered",
        )
        [delivery] = deliveries
        assert (delivery.job_id, delivery.redeliveries) == (job.id, 1)
        consumer.ack([Completion(delivery, b'"slept"')])
    finally:
        consumer.close()
    # And RQ sees it finished, out of the started registry
    assert fetch(redis_url, job.id).get_status() == JobStatus.FINISHED
    assert started.get_job_ids(cleanup=False) == []


def test_a_graceful_stop_hands_the_running_rq_job_back(redis_url: str, tmp_path: Path) -> None:
    # Given an RQ job running on a conveyor worker that gives running jobs 0.5 s on SIGTERM
    marker = tmp_path / "started"
    job = rq_queue(redis_url).enqueue("tests.rq_jobs.slow", str(marker), 30)
    worker = conveyor_worker(redis_url, "--shutdown-timeout", "0.5", "-c", "1", burst=False)
    poll(marker.exists, timeout_s=30, what="the job to start")
    # When it is stopped with SIGTERM
    worker.send_signal(signal.SIGTERM)
    finish(worker)
    # Then the job waits in its RQ queue again, not started, not failed
    queue = rq_queue(redis_url)
    assert queue.job_ids == [job.id]
    assert fetch(redis_url, job.id).get_status() == JobStatus.QUEUED
    assert StartedJobRegistry("q", connection=Redis.from_url(redis_url)).count == 0


def test_rq_retry_decides_retries_and_ttls_come_from_the_job(redis_url: str) -> None:
    # Given an RQ job with Retry(max=1) and its own failure TTL, and one with a result TTL
    queue = rq_queue(redis_url)
    failing = queue.enqueue("tests.rq_jobs.boom", "x", retry=Retry(max=1), failure_ttl=456)
    done = queue.enqueue("tests.rq_jobs.add", 1, 2, result_ttl=123)
    consumer = open_queue("rq+" + redis_url, QueueSettings())
    client = Redis.from_url(redis_url)
    try:
        first, second = consumer.get(["q"], max_count=2, timeout_s=1)
        # When the consumer finishes one and asks to retry the other in a minute
        consumer.ack([Completion(second, b"3")])
        body = encode_job(decode_job(first.body).next_attempt())
        assert consumer.retry(first, body, delay_s=60, error="RuntimeError: x")
        # Then RQ's Retry wins: no interval, so it is queued again now, with no retries left
        assert fetch(redis_url, failing.id).retries_left == 0
        [again] = consumer.get(["q"], max_count=1, timeout_s=1)
        assert decode_job(again.body).attempt == 1
        # And when it fails again, RQ's Retry is spent: it is failed, kept for its failure_ttl
        assert consumer.retry(again, body, delay_s=0, error="RuntimeError: x")
    finally:
        consumer.close()
    assert FailedJobRegistry("q", connection=client).get_job_ids() == [failing.id]
    assert 400 < int(client.ttl(f"rq:job:{failing.id}")) <= 456
    # And the finished one is kept for its own result_ttl, not the worker's default
    assert 100 < int(client.ttl(f"rq:job:{done.id}")) <= 123
    assert fetch(redis_url, done.id).return_value() == 3
