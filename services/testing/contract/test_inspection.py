"""Cheap reads and administration (``QueueInspector``, ``QueueAdmin``): ``counts`` and
``depth`` follow jobs through every state, dead letters are listed and revived."""

from __future__ import annotations

from services.protocol import QueueCounts
from services.testing.contract.helpers import completion, job
from services.testing.contract.subject import BackendUnderTest


def test_counts_of_an_unknown_queue_are_zero(backend: BackendUnderTest) -> None:
    assert backend.root.counts("never-used") == QueueCounts()


def test_counts_follow_jobs_through_every_state(backend: BackendUnderTest) -> None:
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


def test_counts_totals_grow_and_only_count_settlements(backend: BackendUnderTest) -> None:
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


def test_depth_counts_waiting_jobs_only(backend: BackendUnderTest) -> None:
    backend.root.put_many("default", [job(n) for n in range(5)])
    backend.consumer("c1").get(["default"], max_count=2, timeout_s=1)
    assert backend.root.depth("default") == 3


def test_dead_letters_are_listed_and_revived(backend: BackendUnderTest) -> None:
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
