"""The queue protocol's delivery contract (``services.protocol``), proven on every backend."""

from __future__ import annotations

import pickle
import time

from services.codec import decode_value, encode_job, encode_value
from services.job import Job
from tests.contract.conftest import SETTINGS, Backend
from tests.contract.helpers import completion, job, poll


def test_a_put_job_is_delivered_once_and_gone_after_ack(backend: Backend) -> None:
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


def test_put_many_keeps_fifo_order_and_get_batches(backend: Backend) -> None:
    items = [job(n) for n in range(10)]
    backend.root.put_many("default", items)
    consumer = backend.consumer("c1")
    first = consumer.get(["default"], max_count=4, timeout_s=1)
    rest = consumer.get(["default"], max_count=100, timeout_s=1)
    assert [d.job_id for d in first + rest] == [job_id for job_id, _ in items]
    assert len(first) == 4


def test_earlier_queues_are_served_first(backend: Backend) -> None:
    backend.root.put("low", *job(1, "low"))
    backend.root.put("high", *job(2, "high"))
    consumer = backend.consumer("c1")
    [first] = consumer.get(["high", "low"], max_count=1, timeout_s=1)
    [second] = consumer.get(["high", "low"], max_count=1, timeout_s=1)
    assert (first.queue, second.queue) == ("high", "low")


def test_get_waits_up_to_its_timeout_when_empty(backend: Backend) -> None:
    consumer = backend.consumer("c1")
    started = time.monotonic()
    assert consumer.get(["default"], timeout_s=0.3) == []
    assert 0.2 <= time.monotonic() - started < 3.0


def test_a_waiting_consumer_wakes_for_a_new_job(backend: Backend) -> None:
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=0.05) == []
    job_id, body = job()
    backend.root.put("default", job_id, body)
    found = consumer.get(["default"], timeout_s=2)
    assert [d.job_id for d in found] == [job_id]


def test_nack_hands_a_job_back_to_the_front(backend: Backend) -> None:
    backend.root.put_many("default", [job(1), job(2)])
    consumer = backend.consumer("c1")
    [first] = consumer.get(["default"], timeout_s=1)
    consumer.hand_back([first])
    [again] = consumer.get(["default"], timeout_s=1)
    assert again.job_id == first.job_id
    assert again.redeliveries == 0


def test_retry_replaces_the_job_and_hides_it_until_due(backend: Backend) -> None:
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


def test_delayed_put_becomes_visible_after_its_delay(backend: Backend) -> None:
    job_id, body = job()
    started = time.monotonic()
    backend.root.put("default", job_id, body, delay_s=0.4)
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=0.1) == []
    found = poll(lambda: consumer.get(["default"], timeout_s=0.2), timeout_s=5)
    assert [d.job_id for d in found] == [job_id]
    assert time.monotonic() - started >= 0.35


def test_dead_letters_are_listed_and_requeued(backend: Backend) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.dead_letter(delivery, "unknown job 'nope'")
    [letter] = backend.root.dead_letters("default")
    assert (letter.job_id, letter.body, letter.reason) == (job_id, body, "unknown job 'nope'")
    assert backend.root.revive("default") == 1
    assert backend.root.dead_letters("default") == []
    [again] = consumer.get(["default"], timeout_s=1)
    assert again.job_id == job_id


def test_release_hands_a_dead_consumers_jobs_to_another(backend: Backend) -> None:
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


def test_a_job_that_kills_its_consumers_is_quarantined(backend: Backend) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    for attempt in range(SETTINGS.max_redeliveries):
        consumer = backend.consumer(f"victim-{attempt}")
        found = consumer.get(["default"], timeout_s=1)
        assert [d.job_id for d in found] == [job_id]
        backend.root.reclaim(f"victim-{attempt}", "worker died: signal 9")
    # Then the poison job is in the dead letters with the reason, not on the queue
    assert backend.consumer("next").get(["default"], timeout_s=0.1) == []
    [letter] = backend.root.dead_letters("default")
    assert letter.job_id == job_id
    assert "worker died: signal 9, 3 times" in letter.reason


def test_a_released_delivery_cannot_be_settled_by_its_old_owner(backend: Backend) -> None:
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


def test_results_and_status_are_readable_by_id(backend: Backend) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    consumer.ack([completion(delivery, result=encode_value({"answer": 42}))])
    found = backend.root.wait_finished(job_id, timeout_s=2)
    assert found is not None
    assert found.status == "done"
    assert found.result is not None
    assert decode_value(found.result) == {"answer": 42}
    status = backend.root.status(job_id)
    assert status is not None
    assert status.status == "done"


def test_wait_finished_times_out_for_an_unfinished_job(backend: Backend) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    started = time.monotonic()
    assert backend.root.wait_finished(job_id, timeout_s=0.3) is None
    assert time.monotonic() - started >= 0.25


def test_any_bytes_survive_the_round_trip(backend: Backend) -> None:
    # Backends move bytes: even a pickle or binary garbage comes back unchanged (the worker,
    # not the backend, dead-letters it)
    bodies = [pickle.dumps({"x": 1}), bytes(range(256)), b"{truncated", b""]
    backend.root.put_many("default", [(f"raw-{i}", b) for i, b in enumerate(bodies)])
    found = backend.consumer("c1").get(["default"], max_count=10, timeout_s=1)
    assert [d.body for d in found] == bodies


def test_depth_counts_waiting_jobs_only(backend: Backend) -> None:
    backend.root.put_many("default", [job(n) for n in range(5)])
    backend.consumer("c1").get(["default"], max_count=2, timeout_s=1)
    assert backend.root.depth("default") == 3
