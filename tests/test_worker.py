"""The worker loop, stepped in-process with ``run_once`` on the memory backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from consumer.executors import AsyncioExecutor, Executor, ThreadExecutor
from consumer.worker import State, Worker
from producer import Producer
from services.backends import open_queue
from services.codec import decode_value
from services.protocol import JobQueue, JobStatus
from services.settings import QueueSettings, RetrySettings, WorkerSettings
from services.stats import Field, Stats, new_block
from tests import jobs

FAST_RETRY = RetrySettings(base_s=0.01, cap_s=0.05)


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    found = open_queue("memory://", QueueSettings(result_ttl_s=60))
    yield found
    found.close()


def make_worker(
    queue: JobQueue, executor: Executor | None = None, **settings: object
) -> tuple[Worker, Stats]:
    stats = Stats(new_block())
    options: dict[str, object] = {"retry": FAST_RETRY, "poll_s": 0.05}
    options.update(settings)
    worker = Worker(
        queue,
        jobs.registry,
        executor or ThreadExecutor(2),
        WorkerSettings(**options),  # type: ignore[arg-type]
        stats=stats,
    )
    worker.start()
    return worker, stats


def step_until(worker: Worker, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        worker.run_once()


def test_a_job_runs_and_its_result_is_stored(queue: JobQueue) -> None:
    # Given a job on the queue
    job = Producer(queue, registry=jobs.registry).enqueue("add", 2, 3)
    worker, stats = make_worker(queue)
    # When the worker turns until the job is done
    step_until(worker, lambda: stats.get(Field.DONE) == 1)
    step_until(worker, lambda: worker.held == 0)
    # Then its result is readable by id
    status = queue.status(job.id)
    assert status is not None
    assert status.status == "done"
    assert status.result is not None
    assert decode_value(status.result) == 5


@pytest.mark.parametrize("make_executor", [lambda: ThreadExecutor(1), lambda: AsyncioExecutor(4)])
def test_async_jobs_run_on_the_thread_and_asyncio_executors(
    queue: JobQueue, make_executor: Callable[[], Executor]
) -> None:
    producer = Producer(queue, registry=jobs.registry)
    job = producer.enqueue("async_add", 20, 22)
    executor = make_executor()
    worker, stats = make_worker(queue, executor)
    step_until(worker, lambda: stats.get(Field.DONE) == 1)
    step_until(worker, lambda: worker.held == 0)
    assert producer.result(job.id, timeout=1) == 42
    executor.stop()


def test_a_raising_job_is_retried_then_dead_lettered_with_its_traceback(
    queue: JobQueue,
) -> None:
    # Given a job that always raises, with max_retries=2
    job = Producer(queue, registry=jobs.registry).enqueue("fail", "disk on fire")
    worker, stats = make_worker(queue)
    # When the worker runs it until it gives up
    step_until(worker, lambda: bool(queue.dead_letters("default")))
    # Then it ran three times, was retried twice, and the dead letter holds the traceback
    [letter] = queue.dead_letters("default")
    assert letter.job_id == job.id
    assert "failed 3 time(s)" in letter.reason
    assert "Traceback" in letter.reason
    assert "ValueError: disk on fire" in letter.reason
    assert (stats.get(Field.FAILED), stats.get(Field.RETRIED), stats.get(Field.DEAD)) == (3, 2, 1)


def test_an_unknown_job_is_dead_lettered_and_the_worker_goes_on(queue: JobQueue) -> None:
    producer = Producer(queue)  # no registry: the producer cannot check the name
    unknown = producer.enqueue("no_such_job", 1)
    known = producer.enqueue("add", 1, 1)
    worker, stats = make_worker(queue)
    step_until(worker, lambda: stats.get(Field.DONE) == 1 and bool(queue.dead_letters("default")))
    [letter] = queue.dead_letters("default")
    assert letter.job_id == unknown.id
    assert "unknown job 'no_such_job'" in letter.reason
    assert producer.result(known.id, timeout=1) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x80\x04\x95", "looks like pickle"),
        (b'{"v":1,"id":"x"', "not valid JSON"),
        (
            b'{"v":2,"id":"x","name":"a","args":[],"kwargs":{},"queue":"q","attempt":0,'
            b'"enqueued_at":1}',
            "format version 2",
        ),
        (
            b'{"v":1,"id":"x","name":"add","args":{},"kwargs":{},"queue":"q","attempt":0,'
            b'"enqueued_at":1}',
            "'args' must be a list",
        ),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_message_is_dead_lettered_once_with_a_precise_reason(
    queue: JobQueue, body: bytes, reason: str
) -> None:
    # Given garbage written straight into the queue, followed by a good job
    queue.put("default", "raw", body)
    good = Producer(queue).enqueue("add", 1, 2)
    worker, stats = make_worker(queue)
    # When the worker meets it
    step_until(worker, lambda: stats.get(Field.DONE) == 1)
    # Then it is dead-lettered once, with the reason, and the good job still ran
    [letter] = queue.dead_letters("default")
    assert letter.body == body
    assert reason in letter.reason
    assert letter.reason.startswith("malformed message")
    assert queue.status(good.id) is not None


def test_a_hung_job_times_out_and_the_worker_asks_to_be_recycled(queue: JobQueue) -> None:
    # Given a job with timeout=0.5 that never returns, and a normal job behind it
    producer = Producer(queue, registry=jobs.registry)
    hung = producer.enqueue("hang")
    worker, stats = make_worker(queue, ThreadExecutor(2))
    # When the worker turns past the timeout
    step_until(worker, lambda: stats.get(Field.TIMED_OUT) == 1)
    # Then the job is failed with "timed out", retried, and the process must be replaced
    assert worker.recycle_reason is not None
    assert "timed out after 0.5 s" in worker.recycle_reason
    status = queue.status(hung.id)
    assert status is not None
    assert status.error is not None
    assert "timed out after 0.5 s" in status.error


def test_drain_hands_back_unstarted_jobs_and_finishes_running_ones(queue: JobQueue) -> None:
    # Given one slot busy with a slow job and prefetched jobs waiting behind it
    producer = Producer(queue, registry=jobs.registry)
    slow = producer.enqueue("sleep", 0.3)
    waiting = [producer.enqueue("add", n, n) for n in range(3)]
    worker, stats = make_worker(queue, ThreadExecutor(1), prefetch=5)
    step_until(worker, lambda: worker.held == 4 and stats.get(Field.RUNNING) == 1)
    # When the worker drains
    worker.drain()
    step_until(worker, lambda: worker.state is State.STOPPED)
    # Then the slow job finished and the waiting ones are back on the queue, untouched
    assert producer.result(slow.id, timeout=1) == 0.3
    assert queue.depth("default") == len(waiting)
    assert stats.get(Field.DONE) == 1


def test_stop_now_hands_back_running_jobs_at_once(queue: JobQueue) -> None:
    producer = Producer(queue, registry=jobs.registry)
    producer.enqueue("sleep", 30)
    worker, stats = make_worker(queue, ThreadExecutor(1))
    step_until(worker, lambda: stats.get(Field.RUNNING) == 1)
    started = time.monotonic()
    returned = worker.stop_now()
    assert returned == 1
    assert time.monotonic() - started < 1.0
    assert queue.depth("default") == 1


def test_priorities_take_earlier_queues_first(queue: JobQueue) -> None:
    low = Producer(queue, registry=jobs.registry, name="low").enqueue("add", 1, 1)
    high = Producer(queue, registry=jobs.registry, name="high").enqueue("add", 2, 2)
    worker, stats = make_worker(queue, ThreadExecutor(1), queues=("high", "low"), prefetch=0)
    step_until(worker, lambda: stats.get(Field.DONE) == 2)
    high_status, low_status = queue.status(high.id), queue.status(low.id)
    assert high_status is not None
    assert low_status is not None
    assert high_status.status == low_status.status == "done"


def test_a_busy_high_priority_queue_does_not_starve_a_lower_one(queue: JobQueue) -> None:
    # Given a deep high-priority queue and one job on a lower one
    high = Producer(queue, registry=jobs.registry, name="high")
    high.enqueue_many([("add", (n, n), {}) for n in range(100)])
    low = Producer(queue, registry=jobs.registry, name="low").enqueue("add", 0, 0)
    worker, stats = make_worker(queue, ThreadExecutor(1), queues=("high", "low"), prefetch=0)
    # When the worker runs until the low job is done
    step_until(worker, lambda: (queue.status(low.id) or JobStatus("", "")).status == "done")
    # Then it ran long before the high queue drained, but only after high jobs came first
    assert 0 < stats.get(Field.DONE) < 30
    assert queue.depth("high") > 50


def test_the_running_count_excludes_prefetched_jobs(queue: JobQueue) -> None:
    # Given one slot and three long jobs, so one runs and the others wait in the prefetch
    producer = Producer(queue, registry=jobs.registry)
    for _ in range(3):
        producer.enqueue("sleep", 30.0)
    executor = ThreadExecutor(1)
    worker, stats = make_worker(queue, executor, prefetch=2)
    # When the worker has fetched them all
    step_until(worker, lambda: worker.held == 3)
    step_until(worker, lambda: len(executor.mailbox.running()) == 1)
    worker.run_once()
    # Then it publishes one running job, not three held ones
    assert stats.get(Field.RUNNING) == 1
    worker.stop_now()
