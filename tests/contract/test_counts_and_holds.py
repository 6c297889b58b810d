"""``counts``, statuses of waiting jobs, holds (``held_until``, ``confirm``) and the exactness
of fencing: a released delivery is fenced, the same delivery settled twice is not."""

from __future__ import annotations

import time

from services.protocol import QueueCounts
from tests.contract.conftest import SETTINGS, Backend
from tests.contract.helpers import completion, job, poll


def test_counts_of_an_unknown_queue_are_zero(backend: Backend) -> None:
    assert backend.root.counts("never-used") == QueueCounts()


def test_counts_follow_jobs_through_every_state(backend: Backend) -> None:
    # Given four jobs waiting and one delayed for a minute
    backend.root.put_many("default", [job(n) for n in range(4)])
    backend.root.put("default", *job(9), delay_s=60)
    assert backend.root.counts("default") == QueueCounts(waiting=4, delayed=1)
    # When a consumer takes three of them
    consumer = backend.consumer("c1")
    first, second, third = consumer.get(["default"], max_count=3, timeout_s=1)
    assert backend.root.counts("default") == QueueCounts(waiting=1, delayed=1, in_flight=3)
    # And settles one done, one dead and one for a retry in a minute
    assert consumer.ack([completion(first)]) == 0
    assert consumer.dead_letter(second, "unknown job")
    assert consumer.retry(third, third.body, delay_s=60, error="boom")
    # Then the numbers moved with them
    counts = backend.root.counts("default")
    assert counts == QueueCounts(waiting=1, delayed=2, in_flight=0, done=1, dead=1)
    assert counts.unsettled == 3


def test_counts_after_a_consumer_is_released_lose_no_job(backend: Backend) -> None:
    # Given a consumer holding two of three jobs
    backend.root.put_many("default", [job(n) for n in range(3)])
    backend.consumer("doomed").get(["default"], max_count=2, timeout_s=1)
    assert backend.root.counts("default").in_flight == 2
    # When it is released (it died)
    assert backend.root.reclaim("doomed", "worker died: signal 9") == 2
    # Then nothing is in flight and every job waits again
    assert backend.root.counts("default") == QueueCounts(waiting=3)


def test_counts_count_a_poison_job_dead_once(backend: Backend) -> None:
    # Given a job that kills every consumer that takes it
    backend.root.put("default", *job())
    for attempt in range(SETTINGS.max_redeliveries):
        assert backend.consumer(f"victim-{attempt}").get(["default"], timeout_s=1)
        backend.root.reclaim(f"victim-{attempt}", "worker died: signal 9")
    # Then it is counted dead once, and nowhere else
    assert backend.root.counts("default") == QueueCounts(dead=1)


def test_counts_totals_grow_and_only_count_settlements(backend: Backend) -> None:
    # Given two jobs acked one after the other
    backend.root.put_many("default", [job(1), job(2)])
    consumer = backend.consumer("c1")
    for expected_done in (1, 2):
        [delivery] = consumer.get(["default"], timeout_s=1)
        consumer.ack([completion(delivery)])
        # Then the done total counts each settlement once
        assert backend.root.counts("default").done == expected_done
    # And other queues are untouched
    assert backend.root.counts("other") == QueueCounts()


def test_status_of_a_waiting_job_is_queued_and_of_a_delayed_job_scheduled(
    backend: Backend,
) -> None:
    waiting_id, waiting_body = job(1)
    delayed_id, delayed_body = job(2)
    backend.root.put("default", waiting_id, waiting_body)
    backend.root.put("default", delayed_id, delayed_body, delay_s=60)
    waiting = backend.root.status(waiting_id)
    delayed = backend.root.status(delayed_id)
    assert waiting is not None
    assert delayed is not None
    assert (waiting.status, delayed.status) == ("queued", "scheduled")
    assert backend.root.status("never-put") is None


def test_status_of_a_delivered_job_is_running(backend: Backend) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    backend.consumer("c1").get(["default"], timeout_s=1)
    found = backend.root.status(job_id)
    assert found is not None
    assert found.status == "running"


def test_held_until_is_in_the_future_right_after_a_get(backend: Backend) -> None:
    backend.root.put("default", *job())
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=1)
    assert consumer.held_until() > time.monotonic()


def test_confirm_returns_the_deliveries_still_held(backend: Backend) -> None:
    # Given a consumer holding three jobs, one of which it already settled
    backend.root.put_many("default", [job(n) for n in range(3)])
    consumer = backend.consumer("c1")
    first, second, third = consumer.get(["default"], max_count=3, timeout_s=1)
    consumer.ack([completion(second)])
    # When it confirms them all
    held = consumer.confirm([first, second, third])
    # Then the unsettled ones are still its own, in order
    assert held == [first, third]
    assert consumer.confirm([]) == []
    assert consumer.held_until() > time.monotonic()


def test_confirm_drops_deliveries_released_to_others(backend: Backend) -> None:
    # Given a consumer that was paused past its lease: its jobs were handed back
    backend.root.put_many("default", [job(1), job(2)])
    paused = backend.consumer("paused")
    held = paused.get(["default"], max_count=2, timeout_s=1)
    backend.root.reclaim("paused", "lease expired")
    # When it comes back and confirms before starting them
    still = paused.confirm(held)
    # Then it holds none of them, and another consumer gets both
    assert still == []
    others = backend.consumer("other").get(["default"], max_count=10, timeout_s=1)
    assert sorted(d.job_id for d in others) == sorted(d.job_id for d in held)


def test_acking_the_same_delivery_twice_is_not_fencing(backend: Backend) -> None:
    # Given a job acked once (its reply lost, so the worker acks again)
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    first = consumer.ack([completion(delivery, b"1")])
    # When the same delivery is acked a second time
    second = consumer.ack([completion(delivery, b"1")])
    # Then neither is counted as fenced and the job is done once
    assert (first, second) == (0, 0)
    assert backend.root.counts("default") == QueueCounts(done=1)
    found = backend.root.status(job_id)
    assert found is not None
    assert found.status == "done"


def test_retry_and_dead_letter_repeated_are_accepted_once(backend: Backend) -> None:
    # Given two jobs, one retried twice and one dead-lettered twice (replies lost)
    backend.root.put_many("default", [job(1), job(2)])
    consumer = backend.consumer("c1")
    retried, buried = consumer.get(["default"], max_count=2, timeout_s=1)
    retries = [consumer.retry(retried, b"next", delay_s=1.0, error="boom") for _ in range(2)]
    burials = [consumer.dead_letter(buried, "unknown job") for _ in range(2)]
    # Then every call is accepted, and each took effect once
    assert retries == [True, True]
    assert burials == [True, True]
    assert backend.root.counts("default") == QueueCounts(delayed=1, dead=1)
    assert [d.job_id for d in backend.root.dead_letters("default")] == [buried.job_id]
    found = poll(lambda: consumer.get(["default"], max_count=10, timeout_s=0.2))
    assert [(d.job_id, d.body) for d in found] == [(retried.job_id, b"next")]
    assert consumer.get(["default"], timeout_s=0.3) == []


def test_ack_counts_only_released_deliveries_as_fenced(backend: Backend) -> None:
    # Given a paused consumer that acked one job before its others were released
    backend.root.put_many("default", [job(1), job(2)])
    paused = backend.consumer("paused")
    released, acked = paused.get(["default"], max_count=2, timeout_s=1)
    assert paused.ack([completion(acked)]) == 0
    backend.root.reclaim("paused", "lease expired")
    # When it acks both (the second a repeat of an earlier ack)
    rejected = paused.ack([completion(released), completion(acked)])
    # Then only the released one is fenced
    assert rejected == 1
    assert backend.root.counts("default") == QueueCounts(waiting=1, done=1)
