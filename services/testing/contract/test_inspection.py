"""Cheap reads and administration (``QueueInspector``, ``QueueAdmin``): ``counts`` and
``depth`` follow jobs through every state, queues are listed, dead letters are listed, revived
and deleted, and a waiting job is cancelled into one terminal state."""

from __future__ import annotations

import time

from services.codec import encode_job
from services.job import Job
from services.protocol import CANCELLED, Cancellation, JobStatus, QueueCounts
from services.protocol.inspection import QueueGauges
from services.testing.contract.helpers import completion, job, poll, run_all
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


def test_queues_are_the_ones_jobs_were_put_on(backend: BackendUnderTest) -> None:
    # Given jobs put on two queues, one of them delayed
    backend.root.put("beta", *job(1))
    backend.root.put("alpha", *job(2), delay_s=60)
    # Then both are listed, sorted, and a queue only read from is not
    backend.root.counts("never-put")
    assert backend.root.queues() == ["alpha", "beta"]


def test_delete_dead_drops_the_letters_asked_for(backend: BackendUnderTest) -> None:
    # Given three dead letters
    ids = _dead_letters(backend, 3)
    dead_before = backend.root.counts("default").dead
    # When one is deleted by id, and an id that is not there is asked for too
    assert backend.root.delete_dead("default", [ids[0], "not-a-letter"]) == 1
    # Then the others stay; deleting all takes them; the dead total does not change
    assert sorted(letter.job_id for letter in backend.root.dead_letters("default")) == sorted(
        ids[1:]
    )
    assert backend.root.delete_dead("default") == 2
    assert backend.root.dead_letters("default") == []
    assert backend.root.counts("default").dead == dead_before
    assert backend.root.delete_dead("default", []) == 0


def _dead_letters(backend: BackendUnderTest, n: int) -> list[str]:
    items = [job(i) for i in range(n)]
    backend.root.put_many("default", items)
    consumer = backend.consumer("undertaker")
    for delivery in consumer.get(["default"], max_count=n, timeout_s=1):
        assert consumer.dead_letter(delivery, "broken")
    return [job_id for job_id, _ in items]


def test_cancel_ends_a_queued_job_dead_and_it_is_never_delivered(
    backend: BackendUnderTest,
) -> None:
    # Given three queued jobs
    items = [job(n) for n in range(3)]
    backend.root.put_many("default", items)
    middle = items[1][0]
    # When the middle one is cancelled
    outcome = backend.root.cancel(middle)
    # Then it is dead, "cancelled", not attempted, counted once and no longer waiting
    assert outcome == Cancellation(middle, cancelled=True)
    assert backend.root.status(middle) == JobStatus(middle, "dead", 0, CANCELLED)
    assert backend.root.counts("default") == QueueCounts(waiting=2, dead=1)
    assert backend.root.depth("default") == 2
    # And it is not a dead letter, and a consumer gets only the other two
    assert backend.root.dead_letters("default") == []
    assert run_all(backend.consumer("c1")) == [items[0][0], items[2][0]]
    assert backend.root.counts("default") == QueueCounts(done=2, dead=1)


def test_cancel_ends_a_delayed_job(backend: BackendUnderTest) -> None:
    # Given a job delayed by 0.3 s
    job_id, body = job()
    backend.root.put("default", job_id, body, delay_s=0.3)
    # When it is cancelled before it is due
    assert backend.root.cancel(job_id).cancelled
    assert backend.root.counts("default") == QueueCounts(dead=1)
    # Then it never comes, not even once it is due
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=0.6) == []
    assert backend.root.counts("default") == QueueCounts(dead=1)
    assert backend.root.status(job_id) == JobStatus(job_id, "dead", 0, CANCELLED)


def test_cancel_ends_a_job_waiting_for_its_retry_with_its_attempts(
    backend: BackendUnderTest,
) -> None:
    # Given a job that failed once and waits a minute for its retry
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.retry(delivery, body, delay_s=60, error="boom")
    # When it is cancelled / Then it is dead with the attempt it made
    assert backend.root.cancel(job_id).cancelled
    assert backend.root.status(job_id) == JobStatus(job_id, "dead", 1, CANCELLED)
    assert backend.root.counts("default") == QueueCounts(dead=1)


def test_cancel_leaves_running_finished_and_unknown_jobs_alone(
    backend: BackendUnderTest,
) -> None:
    # Given a running job and a finished one
    running, finished = job(1), job(2)
    backend.root.put_many("default", [finished, running])
    consumer = backend.consumer("c1")
    first, second = consumer.get(["default"], max_count=2, timeout_s=1)
    consumer.ack([completion(first, b"7")])
    # When each is cancelled, and an id never put
    for job_id, status in ((running[0], "running"), (finished[0], "done")):
        outcome = backend.root.cancel(job_id)
        # Then nothing changes, and the answer says why
        assert not outcome.cancelled
        assert outcome.status is not None
        assert outcome.status.status == status
    assert backend.root.cancel("never-put") == Cancellation("never-put", cancelled=False)
    assert backend.root.counts("default") == QueueCounts(in_flight=1, done=1)
    # And the running job still settles normally
    assert consumer.ack([completion(second)]) == 0
    assert backend.root.status(running[0]) == JobStatus(running[0], "done", 1)


def test_a_cancelled_job_counts_dead_once_even_if_cancelled_again(
    backend: BackendUnderTest,
) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    assert backend.root.cancel(job_id).cancelled
    again = backend.root.cancel(job_id)
    assert not again.cancelled
    assert again.status == JobStatus(job_id, "dead", 0, CANCELLED)
    assert backend.root.counts("default") == QueueCounts(dead=1)
    # And its id stays taken within the result TTL, like any finished job's
    assert not backend.root.put("default", job_id, body)


def test_oldest_waiting_age_reads_the_head_of_the_queue(backend: BackendUnderTest) -> None:
    gauges = backend.root
    assert isinstance(gauges, QueueGauges)
    # Given an empty queue, then a job enqueued 30 s ago ahead of a fresh one
    assert gauges.oldest_waiting_age("default") is None
    old = Job(name="echo", args=(1,), queue="default", enqueued_at=time.time() - 30)
    backend.root.put("default", old.id, encode_job(old))
    backend.root.put("default", *job(2))
    # Then the age is the older one's
    age = gauges.oldest_waiting_age("default")
    assert age is not None and 29 <= age < 60
    # And once it is taken, the fresh one's
    backend.consumer("c1").get(["default"], timeout_s=1)
    fresh = gauges.oldest_waiting_age("default")
    assert fresh is not None and fresh < 29


def test_done_rate_needs_an_earlier_sample_then_counts_jobs_done(
    backend: BackendUnderTest,
) -> None:
    gauges = backend.root
    assert isinstance(gauges, QueueGauges)
    # Given nobody asked before: the rate is not known yet, and an immediate repeat neither
    assert gauges.done_rate("default") is None
    assert gauges.done_rate("default") is None
    # When three jobs are done after that first sample
    backend.root.put_many("default", [job(n) for n in range(3)])
    assert sorted(run_all(backend.consumer("c1"))) != []
    # Then, once the sample is old enough, the rate is 3 jobs over its age (> 0, < 3 per s)
    rate = poll(lambda: gauges.done_rate("default"), timeout_s=5.0, interval_s=0.1)
    assert rate is not None and 0 < rate <= 3.0


def test_a_batch_of_acks_records_each_jobs_own_attempts_and_result(
    backend: BackendUnderTest,
) -> None:
    # Given two jobs, one of which failed once and came back for its second attempt
    (first, first_body), (second, second_body) = job(1), job(2)
    backend.root.put("default", first, first_body)
    backend.root.put("default", second, second_body)
    consumer = backend.consumer("c1")
    deliveries = consumer.get(["default"], max_count=2, timeout_s=1)
    retried = next(d for d in deliveries if d.job_id == second)
    assert consumer.retry(retried, second_body, delay_s=0, error="boom")
    [again] = poll(lambda: consumer.get(["default"], timeout_s=1))
    # When both are acked in one call
    fresh = next(d for d in deliveries if d.job_id == first)
    assert consumer.ack([completion(fresh, b"1"), completion(again, b"2")]) == 0
    # Then each is done with its own attempts (the retried one's record replaced) and result
    assert backend.root.status(first) == JobStatus(first, "done", 1, None, b"1")
    assert backend.root.status(second) == JobStatus(second, "done", 2, None, b"2")
    assert backend.root.counts("default") == QueueCounts(done=2)
