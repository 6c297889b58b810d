"""How the worker loop batches fetches and acks, stepped in-process on the memory backend."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from consumer.executors import ThreadExecutor
from consumer.fetching import MAX_EXTRA
from consumer.worker import Worker
from producer import Producer
from services.backends import open_queue
from services.protocol import Completion, Delivery, JobQueue
from services.settings import QueueSettings, WorkerSettings
from services.stats import Field, Stats, new_block
from tests import jobs


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    found = open_queue("memory://", QueueSettings(result_ttl_s=60))
    yield found
    found.close()


def record_fetches(queue: JobQueue, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on ``queue.get``: the ``max_count`` of every fetch, in order."""
    asked: list[int] = []
    original = queue.get

    def get(queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0) -> list[Delivery]:
        asked.append(max_count)
        return original(queues, max_count=max_count, timeout_s=timeout_s)

    monkeypatch.setattr(queue, "get", get)
    return asked


def run_worker(queue: JobQueue, done: int, *, prefetch: int, slots: int = 1) -> Worker:
    stats = Stats(new_block())
    settings = WorkerSettings(prefetch=prefetch, poll_s=0.05)
    worker = Worker(queue, jobs.registry, ThreadExecutor(slots), settings, stats=stats)
    worker.start()
    deadline = time.monotonic() + 20
    while stats.get(Field.DONE) < done or worker.held:
        assert time.monotonic() < deadline, "jobs not done before the deadline"
        worker.run_once()
    return worker


def test_a_deep_queue_of_quick_jobs_is_fetched_in_growing_batches(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 2000 quick jobs waiting, and a worker with one slot and prefetch 1
    Producer(queue, registry=jobs.registry).enqueue_many([("add", (1, 2), {})] * 2000)
    asked = record_fetches(queue, monkeypatch)
    # When it drains them
    run_worker(queue, 2000, prefetch=1)
    # Then it asked for more than slot + prefetch at a time, but never beyond the cap
    assert max(asked) > 2
    assert max(asked) <= 1 + MAX_EXTRA
    assert len(asked) < 2000 / 4


def test_slow_jobs_never_grow_the_prefetch(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given jobs that each take longer than a quick fetch interval
    Producer(queue, registry=jobs.registry).enqueue_many([("sleep", (0.02,), {})] * 8)
    asked = record_fetches(queue, monkeypatch)
    # When a worker with two slots and prefetch 1 runs them
    run_worker(queue, 8, prefetch=1, slots=2)
    # Then no fetch asked for more than the slots plus the prefetch
    assert max(asked) <= 3


def test_prefetch_zero_fetches_only_for_free_slots(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    Producer(queue, registry=jobs.registry).enqueue_many([("add", (1, 2), {})] * 200)
    asked = record_fetches(queue, monkeypatch)
    run_worker(queue, 200, prefetch=0)
    assert max(asked) == 1


def test_a_finished_job_is_acked_at_once(queue: JobQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an idle worker with one slot, a job arriving, and a spy on acks
    acked_at: list[float] = []
    original = queue.ack

    def ack(completions: Sequence[Completion]) -> int:
        acked_at.append(time.monotonic())
        return original(completions)

    monkeypatch.setattr(queue, "ack", ack)
    settings = WorkerSettings(poll_s=0.5)
    worker = Worker(queue, jobs.registry, ThreadExecutor(1), settings, stats=Stats(new_block()))
    worker.start()
    job = Producer(queue, registry=jobs.registry).enqueue("add", 2, 3)
    # When the worker turns twice (fetch and run, then settle and wait for more)
    started = time.monotonic()
    worker.run_once()
    worker.run_once()
    # Then the job was acknowledged right after it finished, not after a fetch wait
    status = queue.status(job.id)
    assert status is not None
    assert status.status == "done"
    assert len(acked_at) == 1
    assert acked_at[0] - started < 0.25
