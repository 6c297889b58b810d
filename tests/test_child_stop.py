"""The child's stop policy, stepped with a fake worker and a fake clock (``ChildStop.run_once``).

The fake worker holds ``running`` jobs; a drain lets them finish (the test says when), a hard
stop hands them all back at once. Real worker processes are stopped in test_supervisor,
test_supervision_hardening and test_consumer_hardening.
"""

from __future__ import annotations

import logging
import signal

import pytest

from consumer.child_stop import ChildStop, Move, decide
from consumer.signals import SignalLog
from consumer.worker import State
from services import exitcodes
from services.errors import ConfigError
from services.settings import WorkerSettings

DRAIN_S = 10.0


class FakeWorker:
    """Records what the policy asked of it; ``running`` jobs end only when a test says so."""

    def __init__(self, running: int = 1) -> None:
        self.state = State.RUNNING
        self.idle = False
        self.recycle_reason: str | None = None
        self.jobs_settled = 0
        self.running = running
        self.handed_back = 0
        self.calls: list[str] = []
        self.fails: Exception | None = None

    @property
    def held(self) -> int:
        return self.running

    def run_once(self) -> None:
        self.calls.append("turn")
        if self.fails is not None:
            raise self.fails
        if self.state is State.DRAINING and not self.running:
            self.state = State.STOPPED

    def drain(self) -> None:
        self.calls.append("drain")
        if self.state is State.RUNNING:
            self.state = State.DRAINING

    def stop_now(self) -> int:
        self.calls.append("stop_now")
        self.handed_back, self.running = self.running, 0
        self.state = State.STOPPED
        return self.handed_back

    def flush(self, timeout_s: float) -> bool:
        self.calls.append(f"flush {timeout_s:g}")
        return True

    def finish_jobs(self, count: int = 1) -> None:
        self.running -= count
        self.jobs_settled += count


class Child:
    """A ``ChildStop`` over a fake worker, its signal log, and a supervisor that may vanish."""

    def __init__(self, worker: FakeWorker, *, durable: bool = True, **settings: object) -> None:
        options: dict[str, object] = {"shutdown_timeout_s": DRAIN_S}
        options.update(settings)
        self.worker = worker
        self.signals = SignalLog()
        self.supervisor_alive = True
        self.memory_mb = 100.0
        self.stop = ChildStop(
            worker,
            self.signals,
            WorkerSettings(**options),  # type: ignore[arg-type]
            supervisor_alive=lambda: self.supervisor_alive,
            durable=durable,
            memory_mb=lambda: self.memory_mb,
        )

    def send(self, signum: int) -> None:
        self.signals.record(signum, None)

    def step(self, now: float) -> int | None:
        return self.stop.run_once(now)


def state_of(child: Child) -> State:
    """The fake worker's state now (a call, so that mypy does not narrow it between steps)."""
    return child.worker.state


# -- the pure decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "running", "past_deadline", "move"),
    [
        ([], True, False, Move.KEEP),
        ([signal.SIGTERM], True, False, Move.DRAIN),
        ([signal.SIGTERM], False, False, Move.KEEP),  # already draining: a SIGTERM changes nothing
        ([signal.SIGTERM, signal.SIGQUIT], True, False, Move.STOP_HARD),
        ([signal.SIGQUIT], False, False, Move.STOP_HARD),
        ([], False, True, Move.STOP_HARD),
        ([signal.SIGTERM], False, True, Move.STOP_HARD),
    ],
)
def test_the_decision_for_signals_and_the_deadline(
    received: list[int], running: bool, past_deadline: bool, move: Move
) -> None:
    assert decide(received=received, running=running, past_deadline=past_deadline) is move


# -- drain and deadline -----------------------------------------------------------------------


def test_sigterm_drains_and_the_child_exits_ok_once_its_jobs_finished_in_time() -> None:
    # Given a child running one job
    child = Child(FakeWorker(running=1))
    assert child.step(0.0) is None
    # When SIGTERM arrives
    child.send(signal.SIGTERM)
    assert child.step(1.0) is None
    # Then it drains and keeps turning while the job runs, short of the deadline
    assert state_of(child) is State.DRAINING
    assert child.step(DRAIN_S) is None
    # When the job finishes before the deadline, the child exits OK without a hard stop
    child.worker.finish_jobs()
    assert child.step(DRAIN_S + 0.5) == exitcodes.OK
    assert "stop_now" not in child.worker.calls
    assert child.worker.calls[-1] == f"flush {DRAIN_S:g}"  # what it owes is sent before it exits


def test_when_the_drain_deadline_passes_every_unfinished_job_is_handed_back_and_exit_is_ok() -> (
    None
):
    # Given a child draining since t=1 with a job that does not finish
    child = Child(FakeWorker(running=2))
    child.send(signal.SIGTERM)
    child.step(1.0)
    assert child.step(1.0 + DRAIN_S) is None  # at the deadline, not past it
    assert "stop_now" not in child.worker.calls
    # When the deadline has passed
    code = child.step(1.0 + DRAIN_S + 0.01)
    # Then it stops hard at once (both jobs handed back) and exits OK: nothing was lost
    assert child.worker.handed_back == 2
    assert child.worker.calls[-2:] == ["stop_now", f"flush {DRAIN_S:g}"]
    assert code == exitcodes.OK


def test_a_second_sigterm_only_drains_and_does_not_move_the_deadline() -> None:
    # Given a child draining since t=0 (SIGTERM to the process group reaches it twice)
    child = Child(FakeWorker(running=1))
    child.send(signal.SIGTERM)
    child.step(0.0)
    # When a second SIGTERM arrives later
    child.send(signal.SIGTERM)
    assert child.step(5.0) is None
    # Then it goes on draining, and the hard stop still comes at the first deadline
    assert child.worker.calls.count("drain") == 1
    assert "stop_now" not in child.worker.calls
    assert child.step(DRAIN_S + 0.01) == exitcodes.OK
    assert child.worker.handed_back == 1


@pytest.mark.parametrize("draining", [False, True])
def test_sigquit_stops_hard_at_once(draining: bool) -> None:
    # Given a child running (or already draining) a job
    child = Child(FakeWorker(running=1))
    if draining:
        child.send(signal.SIGTERM)
        child.step(0.0)
    # When SIGQUIT arrives (the supervisor's second stop request or its own deadline)
    child.send(signal.SIGQUIT)
    code = child.step(0.5)
    # Then the job is handed back in this very step, the worker is not turned again, exit OK
    assert child.worker.handed_back == 1
    assert child.worker.calls[-2:] == ["stop_now", f"flush {DRAIN_S:g}"]
    assert code == exitcodes.OK


# -- recycling ----------------------------------------------------------------------------------


def test_after_max_jobs_the_child_drains_then_exits_to_be_recycled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a child that may run 3 jobs, has run 2 and holds two more
    child = Child(FakeWorker(running=2), max_jobs=3)
    child.worker.jobs_settled = 2
    assert child.step(0.0) is None
    assert state_of(child) is State.RUNNING
    # When its third job is settled
    child.worker.finish_jobs()
    with caplog.at_level(logging.INFO, logger="conveyor.child"):
        assert child.step(1.0) is None
    # Then it drains, saying why
    assert state_of(child) is State.DRAINING
    assert "recycling: ran 3 jobs (--max-jobs-per-child 3)" in caplog.text
    # And once its last job finished it exits RECYCLE (replace me, I am fine), no hard stop
    child.worker.finish_jobs()
    assert child.step(2.0) == exitcodes.RECYCLE
    assert "stop_now" not in child.worker.calls


def test_a_recycling_drain_has_the_same_deadline() -> None:
    # Given a child that started recycling at t=0 with a job that never ends
    child = Child(FakeWorker(running=1))
    child.worker.recycle_reason = "job j1 timed out after 0.5 s"
    child.step(0.0)
    assert state_of(child) is State.DRAINING
    # When the drain deadline passes, it stops hard and still asks to be recycled
    assert child.step(DRAIN_S) is None
    assert child.step(DRAIN_S + 0.01) == exitcodes.RECYCLE
    assert child.worker.handed_back == 1


def test_a_sigterm_after_a_recycle_began_does_not_move_the_deadline() -> None:
    child = Child(FakeWorker(running=1), max_jobs=1)
    child.worker.jobs_settled = 1
    child.step(0.0)
    child.send(signal.SIGTERM)
    assert child.step(DRAIN_S - 1) is None
    assert child.step(DRAIN_S + 0.01) == exitcodes.RECYCLE
    assert child.worker.calls.count("drain") == 1


def test_memory_recycles_between_jobs_only() -> None:
    # Given a child over its memory limit that has not settled a job yet
    child = Child(FakeWorker(running=1), max_memory_mb=50.0)
    child.memory_mb = 80.0
    # Then it keeps running: a process that starts above the limit must still make progress
    assert child.step(0.0) is None
    assert state_of(child) is State.RUNNING
    # When a job was settled, it drains to be recycled
    child.worker.finish_jobs()
    assert child.step(1.0) == exitcodes.RECYCLE
    assert child.worker.calls.count("drain") == 1


def test_a_drain_for_sigterm_still_exits_recycle_if_a_limit_was_reached_meanwhile() -> None:
    child = Child(FakeWorker(running=1), max_jobs=1)
    child.send(signal.SIGTERM)
    child.step(0.0)
    child.worker.finish_jobs()  # the last job settles during the drain: the limit is reached
    assert child.step(1.0) == exitcodes.RECYCLE


# -- burst --------------------------------------------------------------------------------------


@pytest.mark.parametrize("burst", [False, True])
def test_a_burst_child_exits_ok_once_the_queues_are_empty(
    burst: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a child that found every queue empty with nothing held
    child = Child(FakeWorker(running=0), burst=burst)
    child.worker.idle = True
    # When it steps
    with caplog.at_level(logging.INFO, logger="conveyor.child"):
        code = child.step(0.0)
    # Then a burst child drains and exits OK; any other keeps waiting for jobs
    if burst:
        assert code == exitcodes.OK
        assert "queues are empty; burst worker exits" in caplog.text
    else:
        assert code is None
        assert state_of(child) is State.RUNNING


# -- supervisor gone, configuration refused -----------------------------------------------------


def test_a_child_whose_supervisor_is_gone_hands_back_its_jobs_and_exits_with_an_error() -> None:
    # Given a child on a durable queue with two jobs
    child = Child(FakeWorker(running=2), durable=True)
    assert child.step(0.0) is None
    # When its supervisor is gone (even with a signal waiting)
    child.supervisor_alive = False
    child.send(signal.SIGTERM)
    code = child.step(1.0)
    # Then it hands every job back at once and exits ERROR, without waiting on settlements
    assert code == exitcodes.ERROR
    assert child.worker.handed_back == 2
    assert child.worker.calls[-1] == "stop_now"


def test_a_child_of_a_memory_queue_whose_supervisor_is_gone_has_nothing_to_hand_back() -> None:
    child = Child(FakeWorker(running=2), durable=False)
    child.supervisor_alive = False
    assert child.step(0.0) == exitcodes.ERROR
    assert child.worker.calls == []  # the queue died with its parent: nothing to talk to


def test_a_configuration_error_while_running_ends_the_child_with_config_failure() -> None:
    child = Child(FakeWorker())
    child.worker.fails = ConfigError("NOPERM this user has no permissions to run 'evalsha'")
    assert child.step(0.0) == exitcodes.CONFIG_FAILURE
