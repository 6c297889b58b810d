"""The supervisor's role (``ConsumerControl``): ``reclaim`` hands a dead consumer's jobs to
others, counted as redeliveries, and a job that keeps killing its consumers is dead-lettered."""

from __future__ import annotations

from services.protocol import QueueCounts
from services.testing.contract.helpers import job
from services.testing.contract.subject import CONTRACT_SETTINGS, BackendUnderTest


def test_reclaim_hands_a_dead_consumers_jobs_to_another(backend: BackendUnderTest) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    doomed = backend.consumer("doomed")
    [held] = doomed.get(["default"], timeout_s=1)
    # When the supervisor reports the consumer dead
    released = backend.root.reclaim("doomed", "worker died: signal 9")
    # Then another consumer gets the job, counted as a redelivery
    survivor = backend.consumer("survivor")
    [again] = survivor.get(["default"], timeout_s=1)
    assert released == 1
    assert (again.job_id, again.body, again.redeliveries) == (held.job_id, body, 1)


def test_a_job_that_kills_its_consumers_is_quarantined(backend: BackendUnderTest) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    for attempt in range(CONTRACT_SETTINGS.max_redeliveries):
        consumer = backend.consumer(f"victim-{attempt}")
        found = consumer.get(["default"], timeout_s=1)
        assert [d.job_id for d in found] == [job_id]
        backend.root.reclaim(f"victim-{attempt}", "worker died: signal 9")
    # Then the poison job is in the dead letters with the reason, not on the queue
    assert backend.consumer("next").get(["default"], timeout_s=0.1) == []
    [letter] = backend.root.dead_letters("default")
    assert letter.job_id == job_id
    assert "worker died: signal 9, 3 times" in letter.reason


def test_counts_after_a_consumer_is_reclaimed_lose_no_job(backend: BackendUnderTest) -> None:
    # Given a consumer holding two of three jobs
    backend.root.put_many("default", [job(n) for n in range(3)])
    backend.consumer("doomed").get(["default"], max_count=2, timeout_s=1)
    assert backend.root.counts("default").in_flight == 2
    # When it is released (it died)
    assert backend.root.reclaim("doomed", "worker died: signal 9") == 2
    # Then nothing is in flight and every job waits again
    assert backend.root.counts("default") == QueueCounts(waiting=3)


def test_counts_count_a_poison_job_dead_once(backend: BackendUnderTest) -> None:
    # Given a job that kills every consumer that takes it
    backend.root.put("default", *job())
    for attempt in range(CONTRACT_SETTINGS.max_redeliveries):
        assert backend.consumer(f"victim-{attempt}").get(["default"], timeout_s=1)
        backend.root.reclaim(f"victim-{attempt}", "worker died: signal 9")
    # Then it is counted dead once, and nowhere else
    assert backend.root.counts("default") == QueueCounts(dead=1)
