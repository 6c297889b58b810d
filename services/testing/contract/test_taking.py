"""The worker's role (``JobTaker``): get in queue order, settle each delivery exactly once,
fencing (a reclaimed delivery is fenced, the same delivery settled twice is not), and holds
(``held_until``, ``confirm``)."""

from __future__ import annotations

import time

from services.codec import encode_job
from services.job import Job
from services.protocol import QueueCounts
from services.testing.contract.helpers import completion, job, poll
from services.testing.contract.subject import BackendUnderTest


def test_a_put_job_is_delivered_once_and_gone_after_ack(backend: BackendUnderTest) -> None:
    # Given a job on the queue
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    # When a consumer takes it and acknowledges it
    [delivery] = consumer.get(["default"], max_count=5, timeout_s=1)
    rejected = consumer.ack([completion(delivery)])
    # Then it was the job put, and nothing is left to deliver
    assert (delivery.job_id, delivery.body, delivery.queue) == (job_id, body, "default")
    assert delivery.redeliveries == 0
    assert rejected == 0
    assert consumer.get(["default"], timeout_s=0.05) == []
    assert backend.root.depth("default") == 0


def test_earlier_queues_are_served_first(backend: BackendUnderTest) -> None:
    backend.root.put("low", *job(1, "low"))
    backend.root.put("high", *job(2, "high"))
    consumer = backend.consumer("c1")
    [first] = consumer.get(["high", "low"], max_count=1, timeout_s=1)
    [second] = consumer.get(["high", "low"], max_count=1, timeout_s=1)
    assert (first.queue, second.queue) == ("high", "low")


def test_get_waits_up_to_its_timeout_when_empty(backend: BackendUnderTest) -> None:
    consumer = backend.consumer("c1")
    started = time.monotonic()
    assert consumer.get(["default"], timeout_s=0.3) == []
    assert 0.2 <= time.monotonic() - started < 3.0


def test_a_waiting_consumer_wakes_for_a_new_job(backend: BackendUnderTest) -> None:
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=0.05) == []
    job_id, body = job()
    backend.root.put("default", job_id, body)
    found = consumer.get(["default"], timeout_s=2)
    assert [d.job_id for d in found] == [job_id]


def test_hand_back_returns_a_job_to_the_front(backend: BackendUnderTest) -> None:
    backend.root.put_many("default", [job(1), job(2)])
    consumer = backend.consumer("c1")
    [first] = consumer.get(["default"], timeout_s=1)
    consumer.hand_back([first])
    [again] = consumer.get(["default"], timeout_s=1)
    assert again.job_id == first.job_id
    assert again.redeliveries == 0


def test_retry_replaces_the_job_and_hides_it_until_due(backend: BackendUnderTest) -> None:
    job = Job(name="echo")
    backend.root.put("default", job.id, encode_job(job))
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    # When the job is retried with a delay
    accepted = consumer.retry(delivery, encode_job(job.next_attempt()), delay_s=0.5, error="boom")
    # Then it is not visible at once, but comes back with the new body after the delay
    assert accepted
    assert consumer.get(["default"], timeout_s=0.1) == []
    found = poll(lambda: consumer.get(["default"], timeout_s=0.2), timeout_s=5)
    assert [d.body for d in found] == [encode_job(job.next_attempt())]


def test_a_reclaimed_delivery_cannot_be_settled_by_its_old_owner(backend: BackendUnderTest) -> None:
    backend.root.put_many("default", [job(1), job(2), job(3)])
    paused = backend.consumer("paused")
    stale = paused.get(["default"], max_count=3, timeout_s=1)
    backend.root.reclaim("paused", "lease expired")
    # When the paused consumer comes back and settles what it held
    rejected = paused.ack([completion(stale[0])])
    retried = paused.retry(stale[1], stale[1].body, delay_s=0, error="late")
    buried = paused.dead_letter(stale[2], "late")
    # Then every late settlement is rejected and the jobs are still there for others
    assert (rejected, retried, buried) == (1, False, False)
    others = backend.consumer("other").get(["default"], max_count=10, timeout_s=1)
    assert sorted(d.job_id for d in others) == sorted(d.job_id for d in stale)


def test_acking_the_same_delivery_twice_is_not_fencing(backend: BackendUnderTest) -> None:
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


def test_retry_and_dead_letter_repeated_are_accepted_once(backend: BackendUnderTest) -> None:
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


def test_ack_counts_only_reclaimed_deliveries_as_fenced(backend: BackendUnderTest) -> None:
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


def test_held_until_is_in_the_future_right_after_a_get(backend: BackendUnderTest) -> None:
    backend.root.put("default", *job())
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=1)
    assert consumer.held_until() > time.monotonic()


def test_confirm_returns_the_deliveries_still_held(backend: BackendUnderTest) -> None:
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


def test_confirm_drops_deliveries_reclaimed_for_others(backend: BackendUnderTest) -> None:
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
