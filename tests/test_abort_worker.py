"""Aborting running jobs with real worker processes, on memory and on a real redis-server: a
sync job in a process pool (its process replaced) and an async job on an asyncio pool
(cancelled in place) end dead, "aborted", are never run again, and the pool takes the next job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from consumer.pool_shape import PoolKind
from services.codec import encode_job
from services.job import Job
from services.protocol import ABORTED, JobQueue, JobStatus, QueueCounts
from tests.helpers_supervisor import (
    no_child_outlives_its_test,
    queue_on_each_backend,
    stop,
    supervise,
    turn_until,
)
from tests.jobs import read_ledger

__all__ = ["no_child_outlives_its_test", "queue_on_each_backend"]


def put(queue: JobQueue, name: str, *args: Any) -> str:
    """Put job ``name`` with ``args`` on the default queue; its id."""
    job = Job(name=name, args=args, queue="default")
    assert queue.put("default", job.id, encode_job(job))
    return job.id


def state_is(queue: JobQueue, job_id: str, wanted: str) -> Callable[[], bool]:
    def check() -> bool:
        found = queue.status(job_id)
        return found is not None and found.status == wanted

    return check


def aborted_dead(queue: JobQueue, job_id: str) -> JobStatus:
    """The status of an aborted job, checked: dead, its error starting "aborted"."""
    found = queue.status(job_id)
    assert found is not None and found.status == "dead", found
    assert found.error is not None and found.error.startswith(ABORTED), found
    return found


def test_a_sync_job_in_a_process_pool_is_aborted_by_replacing_its_process(
    queue: JobQueue, tmp_path: Path
) -> None:
    # Given a process pool of one child running a sync job that would sleep ten minutes
    ledger = tmp_path / "ledger"
    supervisor = supervise(queue, pool=PoolKind.PROCESSES, concurrency=1)
    job_id = put(queue, "ledger", str(ledger), "long", 600)
    turn_until(supervisor, lambda: read_ledger(ledger) == ["start long"])
    [first_pid] = supervisor.pids()
    # When it is aborted
    outcome = queue.abort(job_id)
    assert outcome.cancelled and outcome.status is not None
    assert outcome.status.status == "running"
    # Then it ends dead, "aborted", its process replaced
    turn_until(supervisor, state_is(queue, job_id, "dead"))
    assert "worker process replaced" in (aborted_dead(queue, job_id).error or "")
    # And the pool takes the next job, in a fresh process
    next_id = put(queue, "add", 2, 3)
    turn_until(supervisor, state_is(queue, next_id, "done"))
    assert first_pid not in supervisor.pids()
    # And the aborted job never ran again: one start, no end, dead once, nothing waiting
    assert read_ledger(ledger) == ["start long"]
    assert queue.counts("default") == QueueCounts(done=1, dead=1)
    assert [letter.job_id for letter in queue.dead_letters("default")] == [job_id]
    assert stop(supervisor) == 0


def test_an_async_job_is_cancelled_in_place_and_the_process_keeps_running(
    queue: JobQueue,
) -> None:
    # Given an asyncio pool running an async job that would sleep ten minutes
    supervisor = supervise(queue, pool=PoolKind.ASYNCIO, concurrency=4)
    job_id = put(queue, "async_sleep", 600)
    turn_until(supervisor, state_is(queue, job_id, "running"))
    turn_until(supervisor, lambda: supervisor.running() == 1)
    [pid] = supervisor.pids()
    # When it is aborted
    assert queue.abort(job_id).cancelled
    # Then it ends dead, "aborted", cancelled in place: the same process goes on
    turn_until(supervisor, state_is(queue, job_id, "dead"))
    assert "cancelled in place" in (aborted_dead(queue, job_id).error or "")
    next_id = put(queue, "async_add", 2, 3)
    turn_until(supervisor, state_is(queue, next_id, "done"))
    assert supervisor.pids() == [pid]
    # And it is not retried: still dead, counted once, after the next job ran
    assert queue.counts("default") == QueueCounts(done=1, dead=1)
    assert aborted_dead(queue, job_id).attempts == 1
    assert stop(supervisor) == 0


def test_abort_of_a_finished_job_is_too_late_and_of_a_queued_one_cancels_it(
    queue: JobQueue,
) -> None:
    # Given a job that ran, and one that waits while the only slot is busy
    supervisor = supervise(queue, pool=PoolKind.THREADS, concurrency=1, prefetch=0)
    done_id = put(queue, "add", 1, 1)
    turn_until(supervisor, state_is(queue, done_id, "done"))
    busy_id = put(queue, "sleep", 1.0)
    turn_until(supervisor, state_is(queue, busy_id, "running"))
    waiting_id = put(queue, "add", 2, 2)
    # When both are aborted
    late, cancelled = queue.abort(done_id), queue.abort(waiting_id)
    # Then the finished one is left alone (too late) and the waiting one is cancelled
    assert not late.cancelled and late.status is not None and late.status.status == "done"
    assert cancelled.cancelled and cancelled.status is None
    assert queue.status(waiting_id) == JobStatus(waiting_id, "dead", 0, "cancelled")
    turn_until(supervisor, state_is(queue, busy_id, "done"))
    assert stop(supervisor) == 0
    # And the cancelled job never reached a worker
    assert queue.status(waiting_id) == JobStatus(waiting_id, "dead", 0, "cancelled")
