"""Signals and supervision under pressure: start-up interrupts, process-group signals, restart
decisions, exits that only look like boot failures, the hard stop, alarms, blocked loops."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.monitoring import Monitor
from consumer.pool_shape import PoolKind
from consumer.restart_policy import Action, Death, RestartPolicy, decide
from consumer.seats import Roster
from consumer.signals import interrupts_ignored, recorded_signals
from producer import Producer
from services import exitcodes
from services.protocol import JobQueue
from services.settings import RetrySettings, WorkerSettings
from services.stats import Field, Stats, new_block
from tests import jobs
from tests.helpers_process import children_of, in_own_group, slow_run_command
from tests.helpers_supervisor import (
    count,
    no_child_outlives_its_test,
    queue,
    stop,
    supervise,
    turn_until,
)

POLICY = RestartPolicy(base_s=0.5, cap_s=30.0, stable_s=10.0)
__all__ = ["no_child_outlives_its_test", "queue"]  # fixtures, used by name


def wait_for(what: str, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# -- 1. Ctrl+C during start-up ------------------------------------------------------------------


def test_an_interrupt_while_children_start_is_delivered_afterwards() -> None:
    # Given the parent records SIGINT, and is starting a child
    with recorded_signals(signal.SIGINT) as signals:
        with interrupts_ignored():
            # When Ctrl+C lands right then (on this thread: another one of the test process
            # would take a process-wide signal and the handler would run at once, which is fine)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            assert signals.take() == []
        # Then it is not lost: it is delivered as soon as the child is started
        wait_for("the held SIGINT", lambda: signal.SIGINT in signals.take(), 5)


@pytest.mark.parametrize("attempt", range(4))
def test_ctrl_c_right_at_start_up_always_stops_the_run(attempt: int) -> None:
    # Given `conveyor run` on slow jobs, in its own process group like a terminal job
    with in_own_group(slow_run_command(producers=2, concurrency=3)) as parent:
        # When Ctrl+C hits the group as soon as the first child exists (the parent is then
        # still starting the others)
        wait_for("a first child", lambda: bool(children_of(parent.pid)), 30)
        os.killpg(parent.pid, signal.SIGINT)
        out, err = parent.communicate(timeout=40)
    # Then the run stops, interrupted, without a traceback from any child
    assert parent.returncode == exitcodes.INTERRUPTED, err[-2000:]
    assert "KeyboardInterrupt" not in err
    assert "summary" in out


# -- 4. Restart decisions -----------------------------------------------------------------------


def crash(**fields: object) -> Death:
    base: dict[str, object] = {
        "exitcode": -signal.SIGKILL,
        "booted": True,
        "settled": 0,
        "running": 0,
        "lived_s": 1.0,
        "failures": 0,
        "idle_deaths": 0,
    }
    base.update(fields)
    return Death(**base)  # type: ignore[arg-type]


def test_a_child_refused_by_the_backend_while_running_halts_with_the_usage_code() -> None:
    # Given a booted child that ended because the backend refused its credentials or ACL
    decision = decide(crash(exitcode=exitcodes.CONFIG_FAILURE, settled=12), POLICY)
    # Then the supervisor stops with exit code 2 instead of restarting it into a refusal
    assert (decision.action, decision.exit_code) == (Action.HALT, exitcodes.USAGE)


def test_forty_kills_of_working_children_never_back_off() -> None:
    # Given a seat whose child is killed 40 times, each time after it settled jobs
    failures, delays = 0, []
    for _ in range(40):
        decision = decide(crash(settled=25, running=2, failures=failures), POLICY)
        failures = decision.failures
        delays.append(decision.delay_s)
        # Then each is restarted at once, and reported as a crash
        assert decision.action is Action.RESTART
        assert decision.crashed
    assert delays == [0.0] * 40


def test_children_dying_before_any_work_back_off_exponentially_up_to_the_cap() -> None:
    failures, delays = 0, []
    for _ in range(10):
        decision = decide(crash(failures=failures, lived_s=0.2), POLICY, rng=lambda: 1.0)
        failures = decision.failures
        delays.append(decision.delay_s)
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert delays[-1] == POLICY.cap_s
    assert delays == sorted(delays)


def test_a_child_that_lived_long_resets_the_backoff() -> None:
    decision = decide(crash(failures=6, lived_s=POLICY.stable_s + 1), POLICY)
    assert (decision.failures, decision.delay_s) == (0, 0.0)


@pytest.mark.parametrize(
    ("death", "action"),
    [
        (crash(exitcode=exitcodes.BOOT_FAILURE, booted=False), Action.HALT),
        (crash(exitcode=exitcodes.BOOT_FAILURE, booted=True, settled=3), Action.RESTART),
        (crash(exitcode=exitcodes.RECYCLE, settled=3), Action.RESTART),
        (crash(exitcode=-signal.SIGTERM, stopping=True), Action.RETIRE),
        (crash(exitcode=exitcodes.OK, burst=True), Action.RETIRE),
        (crash(exitcode=exitcodes.OK), Action.RESTART),
    ],
)
def test_how_a_child_ended_decides_halt_retire_or_restart(death: Death, action: Action) -> None:
    decision = decide(death, POLICY)
    assert decision.action is action
    if action is Action.HALT:
        assert decision.exit_code == exitcodes.BOOT_FAILURE
    if death.exitcode == exitcodes.RECYCLE:
        assert (decision.crashed, decision.delay_s) == (False, 0.0)


def test_the_second_idle_death_in_a_row_counts_every_held_delivery() -> None:
    # Given a child that died holding deliveries it never started
    first = decide(crash(), POLICY)
    assert not first.count_all_held
    # When the next one dies the same way
    second = decide(crash(failures=first.failures, idle_deaths=first.idle_deaths), POLICY)
    # Then what it held counts as crash redeliveries, until a child runs something again
    assert second.count_all_held
    again = decide(crash(idle_deaths=second.idle_deaths, running=1), POLICY)
    assert not again.count_all_held
    assert again.idle_deaths == 0


def test_sigkilled_working_children_restart_without_backoff(
    queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Given one worker process busy on a long stream of short jobs
    caplog.set_level(logging.WARNING, logger="conveyor.supervisor")
    producer = Producer(queue, registry=jobs.registry)
    producer.enqueue_many([("sleep", (0.01,), {}) for _ in range(400)])
    supervisor = supervise(queue, prefetch=0)
    # When it is SIGKILLed four times, each time after it settled a few jobs
    for kills in range(4):
        done = count(supervisor, Field.DONE)
        turn_until(supervisor, lambda done=done: count(supervisor, Field.DONE) >= done + 3)  # type: ignore[misc]
        os.kill(supervisor.pids()[0], signal.SIGKILL)
        turn_until(supervisor, lambda kills=kills: _restarts(caplog) == kills + 1)  # type: ignore[misc]
    # Then every restart was immediate: an external kill of a working child is no crash loop
    assert [line.endswith("restarting in 0.0 s") for line in _restart_lines(caplog)] == [True] * 4
    assert stop(supervisor) == exitcodes.OK


def _restart_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]


def _restarts(caplog: pytest.LogCaptureFixture) -> int:
    return len(_restart_lines(caplog))


# -- 5. Exits that only look like boot failures; messages that crash before starting -----------


def test_a_job_exiting_with_the_boot_failure_code_does_not_stop_the_consumer(
    queue: JobQueue,
) -> None:
    # Given jobs that run, and one that calls os._exit(3) (BOOT_FAILURE's code) mid-run
    producer = Producer(queue, registry=jobs.registry)
    first = [producer.enqueue("add", n, 1) for n in range(3)]
    bad = producer.enqueue("exit_process", exitcodes.BOOT_FAILURE)
    later = [producer.enqueue("add", n, 2) for n in range(3)]
    supervisor = supervise(queue, prefetch=0)
    # When the workers run them
    turn_until(supervisor, lambda: bool(queue.dead_letters("default")), 60)
    # Then the supervisor kept going: the job is quarantined like any job killing its worker
    assert supervisor.exit_code is None
    [letter] = queue.dead_letters("default")
    assert letter.job_id == bad.id
    assert "worker died: exit code 3" in letter.reason
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == len(first) + len(later))
    assert stop(supervisor) == exitcodes.OK


def test_a_message_that_kills_workers_before_it_starts_is_quarantined(queue: JobQueue) -> None:
    # Given a message whose worker dies after fetching it and before starting it (so it is
    # never on the running board), and a normal job behind it
    producer = Producer(queue, registry=jobs.crash_on_accept_registry)
    bad = producer.enqueue("crash_on_accept")
    good = producer.enqueue("add", 1, 2)
    supervisor = supervise(queue, prefetch=0, jobs_path="tests.jobs:crash_on_accept_registry")
    # When workers keep dying on it
    turn_until(supervisor, lambda: bool(queue.dead_letters("default")), 60)
    # Then it is counted after the second death in a row, and quarantined: no endless loop
    [letter] = queue.dead_letters("default")
    assert letter.job_id == bad.id
    assert "worker died: signal 9" in letter.reason
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == 1)
    status = queue.status(good.id)
    assert status is not None
    assert status.status == "done"
    assert stop(supervisor) == exitcodes.OK


# -- 2 and 6. Signals from outside: the whole process group, SIGQUIT ---------------------------

# The system-test machinery (real `conveyor worker` processes on the real redis-server).
from tests.test_redis_system import (  # noqa: E402
    QUEUE as REDIS_QUEUE,
)
from tests.test_redis_system import (  # noqa: E402
    WorkerProcess,
    admin,
    enqueue_ledger,
    inspect,
    launch,
    ledger_keys,
    read_runs,
    running_keys,
    wait_settled,
)

__all__ += ["admin", "inspect", "launch"]  # fixtures, used by name


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_sigterm_to_the_whole_process_group_drains_and_exits_0_without_restarts(
    launch: Callable[..., WorkerProcess], inspect: object, tmp_path: Path
) -> None:
    # Given `conveyor worker` (own process group) with two processes, each running a 2 s job
    path = tmp_path / "ledger"
    worker = launch("--pool", "processes", "--concurrency", "2", "--shutdown-timeout", "30")
    worker.wait_workers(2)
    batch = enqueue_ledger(inspect, path, ledger_keys("pg", 6), lambda i: 2.0)  # type: ignore[arg-type]
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, 30)
    running = running_keys(path)
    # When SIGTERM reaches the supervisor and its children at once (systemd, kill -TERM -PGID)
    worker.send_group(signal.SIGTERM)
    # Then it exits 0, the running jobs finished (a drain, not a hard stop), nothing else
    # started, and no child was taken for a crash or restarted
    assert worker.wait_exit(60) == exitcodes.OK, worker.tail()
    log = worker.log()
    assert "died:" not in log
    assert "restarting" not in log
    runs = read_runs(path)
    assert {run.key for run in runs} == running
    assert all(run.ended is not None for run in runs), log
    finished = [job_id for job_id, key in batch.keys.items() if key in running]
    final = wait_settled(inspect, finished, timeout_s=5)  # type: ignore[arg-type]
    assert {status.status for status in final.values()} == {"done"}
    assert inspect.depth(REDIS_QUEUE) == len(batch.keys) - 2  # type: ignore[attr-defined]


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_sigquit_to_conveyor_worker_hands_everything_back_at_once_and_exits_0(
    launch: Callable[..., WorkerProcess], inspect: object, tmp_path: Path
) -> None:
    # Given `conveyor worker` running two 30 s jobs, with more waiting (30 s lease)
    path = tmp_path / "ledger"
    worker = launch("--concurrency", "2", "--lease", "30", "--shutdown-timeout", "30")
    worker.wait_workers(2)
    batch = enqueue_ledger(inspect, path, ledger_keys("q", 4), lambda i: 30.0)  # type: ignore[arg-type]
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, 30)
    # When the supervisor alone gets SIGQUIT
    worker.send(signal.SIGQUIT)
    # Then it stops hard at once: exit 0 (nothing lost), every job back on the queue
    assert worker.wait_exit(15) == exitcodes.OK, worker.tail()
    assert "stopping now" in worker.log()
    wait_for(
        "every job back on the queue",
        lambda: inspect.depth(REDIS_QUEUE) == len(batch.keys),  # type: ignore[attr-defined]
        5,
    )


def test_stop_marks_every_child_stopping_before_it_signals(queue: JobQueue) -> None:
    # Given two running children
    supervisor = supervise(queue, concurrency=2)
    turn_until(supervisor, lambda: len(supervisor.pids()) == 2)
    assert [s.get(Field.STOPPING) for s in supervisor.stats] == [0.0, 0.0]
    # When the stop is received (no turn of the loop in between)
    supervisor.stop()
    # Then every child's block says STOPPING already
    assert [s.get(Field.STOPPING) for s in supervisor.stats] == [1.0, 1.0]
    turn_until(supervisor, lambda: supervisor.exit_code is not None)
    assert supervisor.exit_code == exitcodes.OK


# -- 3. Running counts ---------------------------------------------------------------------------


def test_a_dead_childs_running_count_is_cleared(queue: JobQueue, tmp_path: Path) -> None:
    # Given a child running a long job, its running count published
    ledger = str(tmp_path / "ledger")
    Producer(queue, registry=jobs.registry).enqueue("ledger", ledger, "long", 30)
    supervisor = supervise(queue)
    turn_until(supervisor, lambda: "start long" in jobs.read_ledger(ledger))
    turn_until(supervisor, lambda: count(supervisor, Field.RUNNING) == 1)
    assert supervisor.running() == 1
    # When the supervisor is stopping and the child dies (SIGKILL)
    supervisor.stop()
    os.kill(supervisor.pids()[0], signal.SIGKILL)
    turn_until(supervisor, lambda: supervisor.exit_code is not None)
    # Then no child is alive and none is counted as running anything
    assert supervisor.pids() == []
    assert count(supervisor, Field.RUNNING) == 0
    assert supervisor.running() == 0


def test_draining_counts_only_jobs_that_run_not_those_prefetched(
    queue: JobQueue, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given one single-slot child running one job and holding ten more it prefetched
    caplog.set_level(logging.INFO, logger="conveyor.supervisor")
    ledger = str(tmp_path / "ledger")
    producer = Producer(queue, registry=jobs.registry)
    producer.enqueue_many([("ledger", (ledger, f"k{n}", 0.5), {}) for n in range(11)])
    supervisor = supervise(queue, prefetch=10)
    turn_until(supervisor, lambda: "start k0" in jobs.read_ledger(ledger))
    turn_until(supervisor, lambda: queue.depth("default") == 0)  # all fetched: 1 runs, 10 wait
    # When it is asked to drain
    supervisor.stop()
    # Then it says how many jobs run (1), not how many the child holds
    drains = [r.getMessage() for r in caplog.records if "draining" in r.getMessage()]
    assert drains == ["draining: 1 job(s) running, deadline 5 s"]
    turn_until(supervisor, lambda: supervisor.exit_code is not None)


# -- 6. Backend alarms ---------------------------------------------------------------------------


class AlarmingQueue:
    """The two calls ``Monitor`` makes, scripted by the test."""

    def __init__(self) -> None:
        self.setup: list[str] = []
        self.own_alarms: list[str] = []

    def check_server(self) -> list[str]:
        return list(self.setup)

    def alarms(self) -> list[str]:
        return list(self.own_alarms)


def test_backend_alarms_are_logged_as_errors_and_kept_for_good(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a monitor over two seats on a fixed clock
    now = [0.0]
    backend = AlarmingQueue()
    roster = Roster(2)
    monitor = Monitor(backend, roster, clock=lambda: now[0], check_every_s=30)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="conveyor.supervisor")
    monitor.turn()
    assert monitor.warnings == []
    # When a child counts a backend alarm, and the supervisor's own connection sees lost data
    roster.seats[1].stats.set(Field.ALARMS, 1)
    backend.own_alarms = ["Redis restarted EMPTY: jobs were lost"]
    now[0] += 31
    monitor.turn()
    # Then both are logged at ERROR once and stay in the warnings after later checks
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert any("worker-1" in text for text in errors)
    backend.own_alarms = []
    now[0] += 31
    monitor.turn()
    assert len(monitor.warnings) == 2
    assert "Redis restarted EMPTY: jobs were lost" in monitor.warnings
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


# -- 7. A job that blocks its event loop ---------------------------------------------------------


def test_a_job_blocking_the_event_loop_is_named_and_its_neighbours_are_not_charged(
    queue: JobQueue,
) -> None:
    # Given an asyncio executor running three well-behaved jobs (timeout 1 s) and one that
    # blocks the loop for 2 s (timeout 0.5 s)
    from consumer.executors import AsyncioExecutor
    from consumer.worker import Worker

    producer = Producer(queue, registry=jobs.registry)
    naps = [producer.enqueue("async_nap", 0.3) for _ in range(3)]
    blocker = producer.enqueue("blocks_loop", 2.0)
    executor = AsyncioExecutor(4)
    stats = Stats(new_block())
    settings = WorkerSettings(poll_s=0.05, prefetch=4, retry=RetrySettings(0.01, 0.05))
    worker = Worker(queue, jobs.registry, executor, settings, stats=stats)
    worker.start()
    try:
        # When the blocker holds the loop
        deadline = time.monotonic() + 20
        while executor.stall is None:
            assert time.monotonic() < deadline, "the stall was never noticed"
            worker.run_once()
        # Then the watchdog names it
        assert executor.stall.task.job.id == blocker.id
        # And only the blocker times out; its neighbours finish once the loop is free
        while stats.get(Field.DONE) < len(naps):
            assert time.monotonic() < deadline, "the neighbours never finished"
            worker.run_once()
        assert stats.get(Field.TIMED_OUT) == 1
        for job in naps:
            status = queue.status(job.id)
            assert status is not None
            assert status.status == "done"
    finally:
        worker.stop_now()


def test_neighbours_of_a_loop_blocked_for_good_go_back_uncharged_when_it_is_recycled(
    queue: JobQueue,
) -> None:
    # Given an asyncio pool, three well-behaved jobs and one that blocks the loop for 30 s
    producer = Producer(queue, registry=jobs.registry)
    naps = [producer.enqueue("async_nap", 0.3) for _ in range(3)]
    blocker = producer.enqueue("blocks_loop", 30.0)
    supervisor = supervise(
        queue, pool=PoolKind.ASYNCIO, concurrency=4, prefetch=4, shutdown_timeout_s=1.0
    )
    # When the blocker times out and its process is recycled while the loop is still blocked
    turn_until(supervisor, lambda: bool(queue.dead_letters("default")), 60)
    turn_until(supervisor, lambda: count(supervisor, Field.DONE) == len(naps), 60)
    # Then the blocker alone was timed out and dead-lettered (no retries); the others were
    # handed back, not failed, and ran to the end
    [letter] = queue.dead_letters("default")
    assert letter.job_id == blocker.id
    assert count(supervisor, Field.TIMED_OUT) == 1
    assert count(supervisor, Field.FAILED) == 1
    for job in naps:
        status = queue.status(job.id)
        assert status is not None
        assert status.status == "done"
    assert stop(supervisor) == exitcodes.OK


# -- The two-stage stop, stepped on a fixed clock ------------------------------------------------


def test_the_stop_drains_then_stops_hard_at_the_deadline_then_kills_once() -> None:
    from consumer.shutdown import Shutdown, Step

    shutdown = Shutdown(drain_s=10.0, grace_s=1.5)
    assert shutdown.due(0.0) is None
    assert shutdown.request(0.0) is Step.DRAIN
    assert shutdown.due(9.9) is None
    assert shutdown.due(10.0) is Step.HARD
    assert shutdown.request(10.5) is None  # already hard: nothing more to send
    assert shutdown.due(11.4) is None
    assert shutdown.due(11.5) is Step.KILL
    assert shutdown.due(20.0) is None
    assert shutdown.timers() == []


def test_a_second_request_or_sigquit_stops_hard_at_once() -> None:
    from consumer.shutdown import Shutdown, Step

    twice = Shutdown(drain_s=10.0, grace_s=1.5)
    assert [twice.request(0.0), twice.request(0.1)] == [Step.DRAIN, Step.HARD]
    quit_ = Shutdown(drain_s=10.0, grace_s=1.5)
    assert quit_.hard_now(0.0) is Step.HARD
    assert quit_.stopping
    assert quit_.timers() == [1.5]
