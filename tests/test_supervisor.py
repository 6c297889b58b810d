"""The supervisor with real worker processes and real signals, on the memory backend."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from consumer.pool_shape import PoolKind
from producer import Producer
from services import exitcodes
from services.protocol import JobQueue
from services.stats import Field
from tests import jobs
from tests.helpers_supervisor import (
    count,
    no_child_outlives_its_test,
    queue,
    stop,
    supervise,
    turn_until,
)
from tests.jobs import read_ledger

__all__ = ["no_child_outlives_its_test", "queue"]  # fixtures, used by name


def test_a_sigkilled_busy_child_is_replaced_and_its_job_runs_again(
    queue: JobQueue, tmp_path: Path
) -> None:
    # Given one worker running a slow job that writes a ledger
    ledger = str(tmp_path / "ledger")
    Producer(queue, registry=jobs.registry).enqueue("ledger", ledger, "k1", 1.0)
    supervisor = supervise(queue)
    turn_until(supervisor, lambda: "start k1" in read_ledger(ledger))
    [victim] = supervisor.pids()
    # When the busy child is SIGKILLed
    os.kill(victim, signal.SIGKILL)
    # Then a new child runs the job again to the end
    turn_until(supervisor, lambda: "end k1" in read_ledger(ledger))
    assert read_ledger(ledger).count("start k1") == 2
    [replacement] = supervisor.pids()
    assert replacement != victim
    assert stop(supervisor) == exitcodes.OK


def test_a_sigkilled_idle_child_does_not_hang_the_others(queue: JobQueue) -> None:
    # Given two idle children blocked waiting for jobs
    supervisor = supervise(queue, concurrency=2)
    turn_until(supervisor, lambda: len(supervisor.pids()) == 2)
    turn_until(supervisor, lambda: count(supervisor, Field.RUNNING) == 0, 5)
    # When one is SIGKILLed and jobs arrive
    os.kill(supervisor.pids()[0], signal.SIGKILL)
    producer = Producer(queue, registry=jobs.registry)
    for n in range(20):
        producer.enqueue("add", n, n)
    # Then every job is done
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 20)
    assert stop(supervisor) == exitcodes.OK


@pytest.mark.parametrize("poison", ["kill_self", "exit_process"])
def test_a_poison_job_is_quarantined_and_normal_jobs_all_finish(
    queue: JobQueue, poison: str
) -> None:
    # Given a job that kills its worker, among normal jobs prefetched with it
    producer = Producer(queue, registry=jobs.registry)
    bad = producer.enqueue(poison, *([7] if poison == "exit_process" else []))
    good = [producer.enqueue("add", n, 1) for n in range(10)]
    supervisor = supervise(queue, concurrency=2, prefetch=8)
    # When the workers run them
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == len(good), 60)
    turn_until(supervisor, lambda: bool(queue.dead_letters("default")), 30)
    # Then only the poison job is quarantined, with how its workers died
    [letter] = queue.dead_letters("default")
    assert letter.job_id == bad.id
    died = "signal 9" if poison == "kill_self" else "exit code 7"
    assert f"worker died: {died}" in letter.reason
    assert letter.reason.endswith("3 times")
    for job in good:
        status = queue.status(job.id)
        assert status is not None
        assert status.status == "done"
    assert stop(supervisor) == exitcodes.OK


@pytest.mark.parametrize(
    ("pool", "name"),
    [
        (PoolKind.PROCESSES, "hang"),
        (PoolKind.THREADS, "hang"),
        (PoolKind.ASYNCIO, "hang"),
        (PoolKind.ASYNCIO, "async_hang"),
    ],
)
def test_a_hung_job_times_out_and_the_pool_keeps_working(
    queue: JobQueue, pool: PoolKind, name: str
) -> None:
    # Given a job that hangs (timeout=0.5 s, no retries left after 1 try) and normal jobs
    producer = Producer(queue, registry=jobs.registry)
    hung = producer.enqueue(name)
    good = [producer.enqueue("add", n, 1) for n in range(5)]
    supervisor = supervise(queue, pool=pool, concurrency=2)
    # When the pool runs them
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == len(good), 30)
    # Then the hung job timed out (and was retried), and the normal jobs all finished. The
    # counter moves when the worker gives up on the job; its status once the retry it sends
    # reached the backend: wait for that, not for the counter.
    turn_until(supervisor, lambda: count(supervisor, Field.TIMED_OUT) >= 1, 30)
    turn_until(supervisor, lambda: _error_of(queue, hung.id) is not None, 30)
    assert "timed out after 0.5 s" in str(_error_of(queue, hung.id))
    assert stop(supervisor) == exitcodes.OK


def _error_of(queue: JobQueue, job_id: str) -> str | None:
    status = queue.status(job_id)
    return status.error if status is not None else None


def test_a_child_that_cannot_boot_stops_the_supervisor_with_a_distinct_code(
    queue: JobQueue,
) -> None:
    # Given a registry that fails to import inside worker processes
    supervisor = supervise(queue, concurrency=2, jobs_path="tests.jobs_broken_in_child:registry")
    # When the children try to start
    turn_until(supervisor, lambda: supervisor.exit_code is not None, 30)
    # Then the supervisor stops with BOOT_FAILURE instead of restarting them
    assert supervisor.exit_code == exitcodes.BOOT_FAILURE
    assert supervisor.pids() == []


def test_sigterm_lets_in_flight_jobs_finish(queue: JobQueue, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger")
    producer = Producer(queue, registry=jobs.registry)
    for key in ("a", "b"):
        producer.enqueue("ledger", ledger, key, 0.8)
    supervisor = supervise(queue, concurrency=2, prefetch=0)
    turn_until(supervisor, lambda: len(read_ledger(ledger)) == 2)
    # When asked to stop once
    code = stop(supervisor)
    # Then both running jobs finished before the exit, with exit code 0
    assert code == exitcodes.OK
    assert sorted(read_ledger(ledger)) == ["end a", "end b", "start a", "start b"]
    assert queue.depth("default") == 0


def test_a_second_stop_requeues_unfinished_jobs_at_once(queue: JobQueue, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger")
    producer = Producer(queue, registry=jobs.registry)
    for key in ("a", "b"):
        producer.enqueue("ledger", ledger, key, 30)
    supervisor = supervise(queue, concurrency=2, prefetch=0)
    turn_until(supervisor, lambda: len(read_ledger(ledger)) == 2)
    # When asked to stop twice
    started = time.monotonic()
    supervisor.stop()
    supervisor.run_once(0.05)
    supervisor.stop()
    turn_until(supervisor, lambda: supervisor.exit_code is not None, 10)
    # Then it exits within 2 s and both jobs are back on the queue
    assert time.monotonic() - started < 2.0
    assert queue.depth("default") == 2


def test_jobs_longer_than_the_deadline_are_requeued(queue: JobQueue, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger")
    Producer(queue, registry=jobs.registry).enqueue("ledger", ledger, "long", 30)
    supervisor = supervise(queue, shutdown_timeout_s=0.5)
    turn_until(supervisor, lambda: len(read_ledger(ledger)) == 1)
    started = time.monotonic()
    code = stop(supervisor)
    assert code == exitcodes.OK
    assert time.monotonic() - started < 4.0
    assert queue.depth("default") == 1


def test_children_are_recycled_after_max_jobs(queue: JobQueue) -> None:
    producer = Producer(queue, registry=jobs.registry)
    for n in range(9):
        producer.enqueue("add", n, n)
    supervisor = supervise(queue, max_jobs=3, prefetch=0)
    first = supervisor.pids()
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 9, 60)
    assert supervisor.pids() != first
    assert stop(supervisor) == exitcodes.OK


def test_children_are_recycled_past_their_memory_limit(queue: JobQueue) -> None:
    # Given a memory limit below what any Python process uses
    producer = Producer(queue, registry=jobs.registry)
    for n in range(4):
        producer.enqueue("add", n, n)
    supervisor = supervise(queue, max_memory_mb=1, prefetch=0)
    first = supervisor.pids()
    # When the jobs run / Then each child is replaced after its job, and all jobs are done
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 4, 60)
    turn_until(supervisor, lambda: supervisor.pids() not in ([], first), 30)
    assert stop(supervisor) == exitcodes.OK


def test_threads_pool_runs_many_io_jobs_at_once(queue: JobQueue) -> None:
    producer = Producer(queue, registry=jobs.registry)
    producer.enqueue_many([("sleep", (0.5,), {}) for _ in range(40)])
    supervisor = supervise(queue, pool=PoolKind.THREADS, concurrency=40, prefetch=0)
    started = time.monotonic()
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 40, 30)
    # 40 half-second sleeps in one process: far less than the 20 s they would take in turn
    assert time.monotonic() - started < 10
    assert stop(supervisor) == exitcodes.OK


def test_a_long_running_supervisor_logs_its_progress(
    queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a supervisor on a clock the test can move forward
    offset = [0.0]
    supervisor = supervise(queue, clock=lambda: time.monotonic() + offset[0])
    producer = Producer(queue, registry=jobs.registry)
    for n in range(5):
        producer.enqueue("add", n, n)
    # When jobs finish and half a minute passes
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 5)
    caplog.set_level("INFO", logger="conveyor.supervisor")
    offset[0] += 31
    supervisor.run_once(0.01)
    # Then a progress line reports the totals and the rate
    lines = [r.getMessage() for r in caplog.records if "jobs/s" in r.getMessage()]
    assert lines
    assert lines[-1].startswith("done 5, failed 0")
    assert stop(supervisor) == exitcodes.OK


def test_a_job_holding_the_gil_is_killed_by_the_watchdog_and_quarantined(
    queue: JobQueue,
) -> None:
    # Given a job that holds the GIL in C, so its worker's loop cannot even time it out
    producer = Producer(queue, registry=jobs.registry)
    hog = producer.enqueue("gil_hog")
    good = [producer.enqueue("add", n, 1) for n in range(3)]
    supervisor = supervise(queue, concurrency=2, prefetch=0, hang_timeout_s=1.5)
    # When the supervisor sees the worker's loop silent past the hang timeout
    turn_until(supervisor, lambda: bool(queue.dead_letters("default")), 60)
    # Then the worker was killed each time, and after 3 the job is quarantined; the rest ran
    [letter] = queue.dead_letters("default")
    assert letter.job_id == hog.id
    assert "worker died: signal 9" in letter.reason
    assert letter.reason.endswith("3 times")
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == len(good), 30)
    assert stop(supervisor) == exitcodes.OK
