"""Limited jobs ask for their permits when a slot is free for them, not when they are fetched.

A worker that prefetches asked for permits at fetch time would hold permits for jobs waiting
behind others in its own process; these tests count the backend's ``admit`` calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from consumer.executors import ThreadExecutor
from consumer.worker import Worker
from producer import Producer
from services.backends import open_queue
from services.limits import Limit
from services.protocol import Delivery, JobQueue
from services.settings import QueueSettings, WorkerSettings
from services.stats import Field, Stats, new_block
from tests import jobs_limits
from tests.test_worker import step_until


class CountingLimiter:
    """The memory backend, with each ``admit`` call recorded (and its answer)."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self.admitted: list[str] = []

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        self.admitted.append(delivery.job_id)
        return self._queue.admit(delivery, limits)

    def __getattr__(self, name: str) -> object:
        return getattr(self._queue, name)


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    found = open_queue("memory://", QueueSettings(result_ttl_s=60))
    yield found
    found.close()


def test_a_prefetched_limited_job_asks_for_its_permit_only_when_a_slot_is_free(
    queue: JobQueue, tmp_path: object
) -> None:
    # Given five jobs of a job limited to 2 at once, and a worker with one slot and a prefetch
    producer = Producer(queue, registry=jobs_limits.registry)
    ids = [producer.enqueue("pair", str(tmp_path) + "/ledger", f"k{n}", 0.2).id for n in range(5)]
    limiter = CountingLimiter(queue)
    stats = Stats(new_block())
    worker = Worker(
        limiter,  # type: ignore[arg-type]
        jobs_limits.registry,
        ThreadExecutor(1),
        WorkerSettings(poll_s=0.05, prefetch=8),
        stats=stats,
    )
    worker.start()
    try:
        # When it has fetched them all and the first one runs
        step_until(worker, lambda: worker.held == 5 and stats.get(Field.RUNNING) == 1)
        # Then only that one asked for a permit: the others wait, unparked, in this process
        assert limiter.admitted == ids[:1]
        # And as each finishes, the next asks, until all five ran here, none parked
        step_until(worker, lambda: stats.get(Field.DONE) == 5, timeout_s=30)
        assert limiter.admitted == ids
    finally:
        worker.stop_now()


def test_a_drain_hands_back_limited_jobs_still_waiting_for_a_slot(queue: JobQueue) -> None:
    # Given a worker holding limited jobs that wait for its one busy slot
    producer = Producer(queue, registry=jobs_limits.registry)
    for n in range(3):
        producer.enqueue("pair", "/dev/null", f"k{n}", 0.5)
    stats = Stats(new_block())
    worker = Worker(
        queue,
        jobs_limits.registry,
        ThreadExecutor(1),
        WorkerSettings(poll_s=0.05, prefetch=8),
        stats=stats,
    )
    worker.start()
    try:
        step_until(worker, lambda: worker.held == 3 and stats.get(Field.RUNNING) == 1)
        # When it drains
        worker.drain()
        # Then the two waiting jobs are back on the queue at once, and the running one finishes
        step_until(worker, lambda: queue.counts("default").waiting == 2)
        step_until(worker, lambda: stats.get(Field.DONE) == 1)
    finally:
        worker.stop_now()
    assert queue.counts("default").waiting == 2
