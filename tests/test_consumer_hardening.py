"""Consumer hardening (issue 7): bad bytes never crash-loop a worker, counts follow the backend,
a crasher dies alone, a paused worker runs nothing it no longer owns, a stop starts nothing.

Process-level tests run real worker processes under an in-process ``Supervisor``, on the memory
backend and on a real redis-server; a ledger file outside the queue records what really ran.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from consumer.child import run_worker
from consumer.child_stop import ChildStop
from consumer.executors import ThreadExecutor
from consumer.gate import StartGate
from consumer.mailbox import Mailbox
from consumer.pipeline import Pipeline, RunSettings, run_over, run_pipeline, run_tally
from consumer.pool_shape import PoolKind, PoolShape, shape_pool
from consumer.report import Progress, RunSummary, format_summary
from consumer.signals import SignalLog
from consumer.supervisor import Supervisor, SupervisorSettings
from consumer.worker import State, Worker
from producer import Producer
from services import exitcodes
from services.backends import open_queue
from services.backends.redis.queue import RedisQueue
from services.codec import decode_job
from services.errors import BackendUnavailableError, DecodeError
from services.protocol import Completion, Delivery, JobQueue, JobStatus, QueueCounts
from services.registry import JobSpec, Registry
from services.settings import QueueSettings, RetrySettings, WorkerSettings
from services.stats import Field, Stats, new_block, total
from tests import feeds, jobs, jobs_system
from tests import test_redis_system as system
from tests.helpers_supervisor import TWO_PROCESSES, queue_on_each_backend, stop_supervisor
from tests.test_redis_system import (
    QUEUE,
    WorkerProcess,
    _proc_state,
    enqueue_gated,
    enqueue_ledger,
    ledger_keys,
    logged_since,
    quick,
    read_runs,
    runs_a_job,
    wait_for,
    wait_settled,
)

JOBS = "tests.jobs_system:registry"
system_launch = system.launch  # fixtures of the system tests: conveyor worker processes
system_queue = system.inspect
FINAL = ("done", "dead")
__all__ = ["queue_on_each_backend"]  # the `queue` fixture, used by name


def poll(what: str, done: Callable[[], bool], timeout_s: float, step: Callable[[], None]) -> None:
    """Call ``step`` until ``done`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        step()


def start_supervisor(queue: JobQueue, shape: PoolShape, **worker: object) -> Supervisor:
    options: dict[str, object] = {"poll_s": 0.1, "retry": RetrySettings(0.01, 0.05)}
    options.update(worker)
    settings = SupervisorSettings(
        jobs=JOBS,
        shape=shape,
        worker=WorkerSettings(**options),  # type: ignore[arg-type]
        restart_base_s=0.05,
        restart_cap_s=0.2,
    )
    supervisor = Supervisor(queue, settings)
    supervisor.start()
    return supervisor


def statuses(queue: JobQueue, job_ids: list[str]) -> dict[str, JobStatus | None]:
    return {job_id: queue.status(job_id) for job_id in job_ids}


def all_final(queue: JobQueue, job_ids: list[str]) -> bool:
    return all(s is not None and s.status in FINAL for s in statuses(queue, job_ids).values())


def ledger_jobs(queue: JobQueue, path: Path, keys: list[str], seconds: float = 0.01) -> list[str]:
    producer = Producer(queue, registry=jobs_system.registry)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ledger", (str(path), key, seconds), {}) for key in keys
    ]
    return [job.id for job in producer.enqueue_many(calls)]


def starts(path: Path) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[1] for line in lines if line.startswith("start ")]


# -- 1. decoding never crash-loops ------------------------------------------------------------

HUGE_INT = b'{"v":1,"id":"big","name":"ledger","args":[' + b"7" * 5000 + b'],"enqueued_at":1}'
NOT_UTF8 = b'{"v":1,"id":"latin","name":"ledger","args":["caf\xe9"],"enqueued_at":1}'
BAD_REASONS = {
    "big": "malformed message: message is not usable JSON: it holds an integer of 5000 digits, "
    "over Python's limit of 4300 digits",
    "latin": "malformed message: message is not UTF-8 JSON",
}


def test_an_integer_over_pythons_digit_limit_is_a_decode_error_with_the_reason() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_job(HUGE_INT)
    assert str(caught.value) == BAD_REASONS["big"].removeprefix("malformed message: ")


@pytest.mark.timeout(90)
def test_undecodable_bodies_are_dead_lettered_and_the_worker_process_keeps_going(
    queue: JobQueue, tmp_path: Path
) -> None:
    # Given a 5,000-digit integer body and a non-UTF-8 body at the head of the queue, then jobs
    queue.put("default", "big", HUGE_INT)
    queue.put("default", "latin", NOT_UTF8)
    path = tmp_path / "ledger"
    good = ledger_jobs(queue, path, [f"g{i}" for i in range(10)])
    # When one worker process consumes them
    supervisor = start_supervisor(queue, shape_pool(PoolKind.PROCESSES, 1))
    try:
        poll("a worker process", lambda: len(supervisor.pids()) == 1, 30, supervisor.run_once)
        [pid] = supervisor.pids()
        # (it says it booted once it loaded its jobs, connected and started its executor)
        booted = supervisor.stats[0]
        poll("the child to boot", lambda: booted.get(Field.BOOTED) == 1, 30, supervisor.run_once)
        every = ["big", "latin", *good]
        poll("every job settled", lambda: all_final(queue, every), 60, supervisor.run_once)
        # Then the bad ones are dead-lettered with precise reasons, the rest done, same process
        letters = {d.job_id: d.reason for d in queue.dead_letters("default", limit=100)}
        assert letters == BAD_REASONS
        assert {s.status for s in statuses(queue, good).values() if s} == {"done"}
        assert sorted(starts(path)) == sorted(f"g{i}" for i in range(10))
        assert supervisor.pids() == [pid]
    finally:
        stop_supervisor(supervisor)


class _ExplodingRegistry(Registry):
    """A registry whose lookup of one name raises something that is not a ``ConveyorError``."""

    def get(self, name: str) -> JobSpec:
        if name == "explode":
            raise RuntimeError("lookup exploded")
        return jobs.registry.get(name)


def test_any_error_while_preparing_a_job_dead_letters_it_and_the_loop_goes_on() -> None:
    # Given a job whose preparation raises an unexpected error, and a good job behind it
    queue = open_queue("memory://", QueueSettings(result_ttl_s=60))
    try:
        producer = Producer(queue)
        bad = producer.enqueue("explode")
        good = producer.enqueue("add", 1, 2)
        executor = ThreadExecutor(1)
        worker = Worker(queue, _ExplodingRegistry(), executor, WorkerSettings(poll_s=0.05))
        worker.start()
        # When the worker turns until the good job is done
        deadline = time.monotonic() + 10
        while (queue.status(good.id) or JobStatus("", "")).status != "done":
            assert time.monotonic() < deadline
            worker.run_once()
        # Then the bad one is dead-lettered with the error, and run_once never raised
        [letter] = queue.dead_letters("default")
        assert (letter.job_id, letter.reason) == (
            bad.id,
            "malformed message: RuntimeError: lookup exploded",
        )
        executor.stop()
    finally:
        queue.close()


# -- 2. count only what is settled --------------------------------------------------------------


class _AcksDown:
    """A memory queue whose ``ack`` raises while ``down`` is set (the backend is unreachable)."""

    def __init__(self, inner: JobQueue) -> None:
        self.inner = inner
        self.down = True

    def ack(self, completions: Sequence[Completion]) -> int:
        if self.down:
            raise BackendUnavailableError("backend down (test)")
        return self.inner.ack(completions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_finished_job_whose_ack_fails_is_not_counted_done_until_the_ack_lands() -> None:
    # Given a worker whose backend refuses acks
    inner = open_queue("memory://", QueueSettings(result_ttl_s=60))
    flaky = _AcksDown(inner)
    try:
        job = Producer(inner, registry=jobs.registry).enqueue("add", 1, 2)
        stats = Stats(new_block())
        executor = ThreadExecutor(1)
        worker = Worker(
            cast(JobQueue, flaky), jobs.registry, executor, WorkerSettings(poll_s=0.05), stats=stats
        )
        worker.start()
        # When the job finishes but its ack cannot reach the backend
        deadline = time.monotonic() + 10
        while worker.jobs_settled == 0:
            assert time.monotonic() < deadline
            worker.run_once()
        worker.run_once()
        # Then it is not counted done: it is still held, unsettled in the backend
        assert stats.get(Field.DONE) == 0
        assert worker.held == 1
        assert (inner.status(job.id) or JobStatus("", "")).status != "done"
        # When the backend is back, the ack lands and only then the job counts, once
        flaky.down = False
        assert worker.flush(10.0)
        assert stats.get(Field.DONE) == 1
        assert (inner.status(job.id) or JobStatus("", "")).status == "done"
        executor.stop()
    finally:
        inner.close()


def test_a_run_is_over_only_when_producers_are_done_and_the_backend_holds_none_of_its_jobs() -> (
    None
):
    before = QueueCounts(done=5, dead=1)
    busy = run_tally(10, total([]), before, QueueCounts(in_flight=1, done=14, dead=1))
    assert (busy.done, busy.dead, busy.unsettled) == (9, 0, 1)
    # counted 9 of 10 done but one job is still in flight: not over, whatever counters say
    assert not run_over(busy, producing=False)
    idle = run_tally(10, total([]), before, QueueCounts(done=15, dead=1))
    assert run_over(idle, producing=False)
    assert not run_over(idle, producing=True)


def test_an_excess_is_shown_as_such_in_the_summary() -> None:
    summary = RunSummary(
        produced=1009, totals=total([]), done=1011, dead=0, elapsed_s=1.0, dead_letters=[]
    )
    text = format_summary(summary)
    assert summary.unaccounted == -2
    assert "  unaccounted   -2\n" in text
    assert "EXCESS: 2 job(s) settled more often than produced" in text


@pytest.mark.timeout(180)
def test_a_run_whose_workers_are_sigkilled_settles_every_job_exactly_once(
    queue: JobQueue,
) -> None:
    # Given `conveyor run` (in-process) producing 300 short jobs for 2 worker processes
    settings = RunSettings(
        supervisor=TWO_PROCESSES,
        producers=2,
        feed="tests.feeds:quick_feed",
        feed_options={"count": 300},
        stall_timeout_s=60,
    )
    pipeline = Pipeline(queue, settings)
    pipeline.start()
    rng, kills, next_kill = random.Random(11), 0, 30
    signals = SignalLog()  # no handlers: nothing interrupts this run
    # When a random worker process is SIGKILLed each time another 30 jobs are settled, until
    # the run ends by itself (paced by progress, not the clock: a busy machine gets its kills too)
    deadline = time.monotonic() + 150
    while pipeline.supervisor.exit_code is None:
        assert time.monotonic() < deadline, f"the run never ended: {pipeline.tally()}"
        tally = pipeline.step(signals)
        pids = pipeline.supervisor.pids()
        if tally.settled >= next_kill and pids and tally.unsettled:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills, next_kill = kills + 1, tally.settled + 30
    # Then every produced job was settled exactly once, and the backend holds none of them
    summary = pipeline.summary()
    assert summary.produced == 300
    assert (summary.done + summary.dead, summary.unaccounted) == (300, 0), format_summary(summary)
    assert queue.counts("default").unsettled == 0
    assert not pipeline.stalled
    assert kills >= 3


# -- 6. a memory queue's children say plainly that its jobs died with it ------------------------


@pytest.mark.parametrize("durable", [False, True])
def test_a_worker_whose_parent_died_says_what_became_of_its_jobs(
    durable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker holding 3 jobs (one running, two prefetched)
    queue = open_queue("memory://", QueueSettings(result_ttl_s=60))
    try:
        Producer(queue, registry=jobs.registry).enqueue_many([("sleep", (0.5,), {})] * 3)
        executor = ThreadExecutor(1)
        worker = Worker(queue, jobs.registry, executor, WorkerSettings(poll_s=0.05, prefetch=2))
        worker.start()
        deadline = time.monotonic() + 10
        while worker.held < 3:
            assert time.monotonic() < deadline
            worker.run_once()
        # When its loop finds the parent gone
        stop = ChildStop(
            worker,
            SignalLog(),
            WorkerSettings(poll_s=0.05),
            supervisor_alive=lambda: False,
            durable=durable,
        )
        with caplog.at_level(logging.INFO, logger="conveyor.child"):
            code = run_worker(stop)
        # Then it exits with an error and says what became of the jobs
        assert code == exitcodes.ERROR
        if durable:
            assert "supervisor is gone; handing back my 3 job(s)" in caplog.text
            assert queue.depth("default") == 3  # running and prefetched, all handed back
        else:
            assert (
                "the memory queue died with its parent: every job still queued there is lost; "
                "this worker held 3 (lost too)" in caplog.text
            )
            assert "handing back" not in caplog.text
            assert queue.depth("default") == 0  # nothing was handed back
        executor.stop()
    finally:
        queue.close()


# -- 3. only the job that kills its worker is quarantined ---------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", [PoolKind.THREADS, PoolKind.ASYNCIO])
def test_crashers_die_alone_and_their_neighbours_all_finish(
    queue: JobQueue, kind: PoolKind, tmp_path: Path
) -> None:
    # Given 3 jobs that SIGKILL their process, among 20 quick and 3 slow jobs
    path = tmp_path / "ledger"
    producer = Producer(queue, registry=jobs_system.registry)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for i in range(26):
        if i in (3, 11, 19):
            calls.append(("kill_self", (str(path), f"crash{i}"), {}))
        else:
            seconds = 0.4 if i in (1, 9, 17) else 0.01 + (i % 4) * 0.01
            calls.append(("ledger", (str(path), f"n{i}", seconds), {}))
    job_ids = [job.id for job in producer.enqueue_many(calls)]
    crashers = {job_ids[i] for i in (3, 11, 19)}
    # When one process with 4 slots (threads, or an event loop) runs them
    supervisor = start_supervisor(queue, shape_pool(kind, 4), prefetch=4)
    try:
        poll("every job settled", lambda: all_final(queue, job_ids), 180, supervisor.run_once)
    finally:
        stop_supervisor(supervisor)
    # Then only the crashers are dead-lettered, each for killing its process 3 times
    letters = {d.job_id: d.reason for d in queue.dead_letters("default", limit=100)}
    assert set(letters) == crashers, letters
    assert all(reason.endswith(", 3 times") for reason in letters.values()), letters
    final = statuses(queue, job_ids)
    assert {job_id for job_id, s in final.items() if s and s.status == "done"} == (
        set(job_ids) - crashers
    )
    assert starts(path).count("crash3") == 3


# -- 4. ownership before start ------------------------------------------------------------------


class _Paused:
    """A memory queue whose hold can lapse (``until``) and whose ``confirm`` loses some jobs."""

    def __init__(self, inner: JobQueue) -> None:
        self.inner = inner
        self.until = math.inf
        self.lost: set[str] = set()
        self.confirmed: list[list[str]] = []
        self.running: set[str] = set()
        self.alarm_list: list[str] = []

    def held_until(self) -> float:
        return self.until

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self.confirmed.append([d.job_id for d in deliveries])
        self.until = math.inf  # confirming renews the hold
        return [d for d in deliveries if d.job_id not in self.lost]

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        for delivery in deliveries:
            (self.running.add if running else self.running.discard)(delivery.job_id)

    def alarms(self) -> list[str]:
        return self.alarm_list

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def paused_worker(
    tmp_path: Path, **settings: Any
) -> Iterator[tuple[_Paused, Worker, Stats, Producer]]:
    inner = open_queue("memory://", QueueSettings(result_ttl_s=60))
    fake = _Paused(inner)
    stats = Stats(new_block())
    # The gate as a worker process builds it: ownership confirmed before a start.
    gate = StartGate(cast(JobQueue, fake), stopping=stats.stop_requested)
    executor = ThreadExecutor(1, Mailbox(gate=gate))
    options: dict[str, Any] = {"poll_s": 0.05, "prefetch": 3}
    options.update(settings)
    worker = Worker(
        cast(JobQueue, fake), jobs.registry, executor, WorkerSettings(**options), stats=stats
    )
    worker.start()
    try:
        yield fake, worker, stats, Producer(inner, registry=jobs.registry)
    finally:
        executor.stop()
        inner.close()


@pytest.fixture
def paused(tmp_path: Path) -> Iterator[tuple[_Paused, Worker, Stats, Producer]]:
    yield from paused_worker(tmp_path)


def step(worker: Worker, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    poll("the worker's condition", done, timeout_s, worker.run_once)


def test_after_a_pause_past_the_lease_only_confirmed_jobs_start(
    paused: tuple[_Paused, Worker, Stats, Producer], tmp_path: Path
) -> None:
    fake, worker, stats, producer = paused
    path = str(tmp_path / "ledger")
    # Given one slot busy with a job and three jobs prefetched behind it
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ledger", (path, key, 0.3 if key == "a" else 0.0), {}) for key in "abcd"
    ]
    a, b, c, d = (job.id for job in producer.enqueue_many(calls))
    step(worker, lambda: worker.held == 4 and "start a" in jobs.read_ledger(path))
    assert fake.running == {a}  # the backend was told which job runs
    # When the hold lapses (the process was paused) and the backend gave job c to another
    fake.until, fake.lost = 0.0, {c}
    # Then, once the running job ends, one confirm asks about all three waiting jobs
    step(worker, lambda: stats.get(Field.DONE) == 3 and worker.held == 0)
    assert fake.confirmed == [[b, c, d]]
    # ... b and d ran; c neither ran nor was settled here
    assert jobs.read_ledger(path) == ["start a", "end a", "start b", "end b", "start d", "end d"]
    assert (fake.inner.status(c) or JobStatus("", "")).status != "done"
    assert fake.running == set()


# -- 5. stop means stop; boot and alarms are published ------------------------------------------


def test_once_stopping_is_set_no_job_starts_and_nothing_is_fetched(
    paused: tuple[_Paused, Worker, Stats, Producer], tmp_path: Path
) -> None:
    fake, worker, stats, producer = paused
    path = str(tmp_path / "ledger")
    # Given one job running and two prefetched
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ledger", (path, key, 0.3 if key == "a" else 0.0), {}) for key in "abc"
    ]
    producer.enqueue_many(calls)
    step(worker, lambda: worker.held == 3 and "start a" in jobs.read_ledger(path))
    # When the supervisor marks the process as stopping (before its SIGTERM arrives)
    stats.set(Field.STOPPING, 1)
    more = producer.enqueue("add", 1, 1)
    step(worker, lambda: stats.get(Field.DONE) == 1)
    for _ in range(10):
        worker.run_once()
    # Then the running job finished, but nothing else started and nothing more was fetched
    assert jobs.read_ledger(path) == ["start a", "end a"]
    assert worker.held == 2
    assert fake.inner.depth("default") == 1
    assert (fake.inner.status(more.id) or JobStatus("", "")).status != "done"
    # ... and the drain that follows the signal hands the two waiting jobs back
    worker.drain()
    step(worker, lambda: worker.state is State.STOPPED)
    assert fake.inner.depth("default") == 3


def test_the_worker_publishes_how_many_backend_alarms_it_has_seen(
    paused: tuple[_Paused, Worker, Stats, Producer],
) -> None:
    fake, worker, stats, _ = paused
    fake.alarm_list = ["Redis restarted empty", "Redis evicts keys"]
    worker.run_once()
    assert stats.get(Field.ALARMS) == 2


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_prefetched_jobs_of_a_worker_paused_past_its_lease_run_exactly_once(
    system_launch: Callable[..., WorkerProcess], system_queue: RedisQueue, tmp_path: Path
) -> None:
    launch, inspect = system_launch, system_queue
    # Given worker A (1 slot, 1 s lease) running a gated job with five jobs prefetched behind it
    path, gate = tmp_path / "ledger", tmp_path / "gate"
    a = launch("--pool", "threads", "--concurrency", "1", "--lease", "1", "--prefetch", "5")
    [a_child] = a.wait_workers(1)
    held = enqueue_gated(inspect, path, gate, ["held"])
    wait_for("A to start the gated job", lambda: runs_a_job(path, a_child), timeout_s=20)
    batch = enqueue_ledger(inspect, path, ledger_keys("p", 5), quick)
    wait_for("A to prefetch all five", lambda: inspect.counts(QUEUE).waiting == 0, timeout_s=10)
    # When A's process group is SIGSTOPped, and worker B takes the jobs once A's lease expires
    a.send_group(signal.SIGSTOP)
    wait_for("A to stop", lambda: _proc_state(a_child) == "T", timeout_s=5, poll_s=0.005)
    gate.touch()
    b = launch("--pool", "threads", "--concurrency", "2", "--lease", "1")
    [b_child] = b.wait_workers(1)
    every = [*held.keys, *batch.keys]
    final = wait_settled(inspect, every, timeout_s=30)
    mark = len(a.log())
    # ... and then A resumes: its running job ends, and it looks at the five it prefetched
    a.send_group(signal.SIGCONT)
    wait_for(
        "A to drop the jobs it no longer holds",
        lambda: logged_since(a, mark, "dropped 5 prefetched job(s), not run"),
        timeout_s=20,
    )
    # Then each prefetched job ran exactly once, on B, and is done
    runs = read_runs(path)
    for key in batch.keys.values():
        assert [(r.pid, r.ended is not None) for r in runs if r.key == key] == [(b_child, True)]
    assert {s.status for s in final.values()} == {"done"}
    assert a.proc.poll() is None and b.proc.poll() is None


def test_a_run_counts_and_lists_only_its_own_dead_letters(queue: JobQueue) -> None:
    # Given a queue holding a dead letter from before the run
    queue.put("default", "old", b"{}")
    [old] = queue.get(["default"], max_count=1, timeout_s=5)
    assert queue.dead_letter(old, "from an earlier run")
    settings = RunSettings(
        supervisor=SupervisorSettings(
            jobs="tests.jobs:registry",
            shape=shape_pool(PoolKind.THREADS, 2),
            worker=WorkerSettings(poll_s=0.1, retry=RetrySettings(0.01, 0.05)),
        ),
        producers=1,
        feed="tests.feeds:small_feed",
        feed_options={"count": 12},
    )
    # When a run of 12 jobs (every third fails for good) ends
    code, summary = run_pipeline(queue, settings, SignalLog(), Progress(io.StringIO()))
    # Then its figures and its dead letters are its own
    done, dead = feeds.expected_outcome(12)
    assert (code, summary.done, summary.dead, summary.unaccounted) == (exitcodes.OK, done, dead, 0)
    assert len(summary.dead_letters) == dead
    assert "old" not in {letter.job_id for letter in summary.dead_letters}
