"""Contract: ``abort`` cancels a waiting job, asks the consumer of a running one to stop it
(``aborted`` tells that consumer, and only about its request), and leaves finished jobs alone.

The request outlives a crash of the consumer (the job redelivered is aborted in turn) and
lapses once the job is settled."""

from __future__ import annotations

from services.protocol import ABORTED, CANCELLED, Cancellation, JobStatus, QueueCounts
from services.testing.contract.helpers import completion, job
from services.testing.contract.subject import BackendUnderTest


def test_abort_of_a_waiting_job_cancels_it(backend: BackendUnderTest) -> None:
    # Given a queued job and a delayed one
    queued, delayed = job(1), job(2)
    backend.root.put("default", *queued)
    backend.root.put("default", *delayed, delay_s=60)
    # When both are aborted / Then both are cancelled: dead, never delivered
    for job_id, _ in (queued, delayed):
        assert backend.root.abort(job_id) == Cancellation(job_id, cancelled=True)
        assert backend.root.status(job_id) == JobStatus(job_id, "dead", 0, CANCELLED)
    assert backend.root.counts("default") == QueueCounts(dead=2)
    assert backend.consumer("c1").get(["default"], timeout_s=0.3) == []


def test_abort_of_a_running_job_reaches_its_consumer_only_for_that_job(
    backend: BackendUnderTest,
) -> None:
    # Given a consumer running two jobs
    first, second = job(1), job(2)
    backend.root.put_many("default", [first, second])
    consumer = backend.consumer("c1")
    deliveries = consumer.get(["default"], max_count=2, timeout_s=1)
    consumer.started(deliveries)
    assert consumer.aborted(deliveries) == []
    # When the first one is aborted
    outcome = backend.root.abort(first[0])
    # Then the request is recorded: cancelled, as it stands running
    assert outcome.cancelled
    assert outcome.status is not None and outcome.status.status == "running"
    # And its consumer learns of it (and of nothing else), as often as it asks
    aborting = [d for d in deliveries if d.job_id == first[0]]
    assert consumer.aborted(deliveries) == aborting
    assert consumer.aborted(deliveries) == aborting
    # When the consumer settles it dead / Then it is dead, aborted, and not counted running
    assert consumer.dead_letter(aborting[0], f"{ABORTED} by request")
    found = backend.root.status(first[0])
    assert found is not None and found.status == "dead"
    assert found.error is not None and found.error.startswith(ABORTED)
    assert backend.root.counts("default") == QueueCounts(in_flight=1, dead=1)
    # And the request lapsed with the job: nothing else is ever reported
    assert consumer.aborted(deliveries) == []


def test_an_abort_request_outlives_the_crash_of_the_consumer(backend: BackendUnderTest) -> None:
    # Given a running job asked to abort, whose consumer dies before it acts on it
    job_id, body = job()
    backend.root.put("default", job_id, body)
    first = backend.consumer("c1")
    [delivery] = first.get(["default"], timeout_s=1)
    first.started([delivery])
    assert backend.root.abort(job_id).cancelled
    assert backend.root.reclaim("c1", "worker died: signal 9") == 1
    # When another consumer takes the job redelivered
    second = backend.consumer("c2")
    [again] = second.get(["default"], timeout_s=2)
    second.started([again])
    # Then it is told to abort it too
    assert second.aborted([again]) == [again]


def test_abort_of_a_finished_or_unknown_job_is_too_late(backend: BackendUnderTest) -> None:
    # Given a job that ran to completion
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    consumer.ack([completion(delivery, b"7")])
    # When it is aborted / Then nothing changes, and the answer says it is done
    outcome = backend.root.abort(job_id)
    assert not outcome.cancelled
    assert outcome.status is not None and outcome.status.status == "done"
    assert backend.root.status(job_id) == JobStatus(job_id, "done", 1, None, b"7")
    # And an id never seen is not aborted either
    assert backend.root.abort("never-put") == Cancellation("never-put", cancelled=False)


def test_a_request_for_a_job_that_finished_meanwhile_lapses(backend: BackendUnderTest) -> None:
    # Given a running job asked to abort that finishes before its consumer checks
    done, other = job(1), job(2)
    backend.root.put_many("default", [done, other])
    consumer = backend.consumer("c1")
    deliveries = consumer.get(["default"], max_count=2, timeout_s=1)
    assert backend.root.abort(done[0]).cancelled
    finished = [d for d in deliveries if d.job_id == done[0]]
    assert consumer.ack([completion(finished[0])]) == 0
    # When the consumer asks about the job still running / Then nothing is to abort
    running = [d for d in deliveries if d.job_id == other[0]]
    assert consumer.aborted(running) == []
    assert backend.root.status(done[0]) == JobStatus(done[0], "done", 1)
