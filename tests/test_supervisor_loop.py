"""The supervisor's loop stepped on fake process handles and a fixed clock: reap -> decide ->
respawn, resize, and the signals that drive them, with no process started (gunicorn tests its
reaping with a mocked ``waitpid``; Huey tests ``loop(now)``)."""

from __future__ import annotations

import signal
from collections.abc import Collection

import pytest

from consumer.child import ChildSpec
from consumer.pool_shape import PoolKind, shape_pool
from consumer.signals import SignalLog
from consumer.sizing import SeatChanges, check_size, seat_changes
from consumer.supervisor import Supervisor, SupervisorSettings
from services import exitcodes
from services.settings import WorkerSettings
from services.stats import Field


class FakeProcess:
    """A ``ProcessHandle`` whose end the test decides; a signal that ends a process ends it."""

    def __init__(self, pid: int, spec: ChildSpec) -> None:
        self.pid: int | None = pid
        self.spec = spec
        self.exitcode: int | None = None
        self.sentinel: int | None = None
        self.signals: list[int] = []
        self.joined = False

    @property
    def consumer_id(self) -> str:
        """The name it consumes under (``FakeControl``'s connectors are those names)."""
        return str(self.spec.connector)

    def join(self) -> None:
        self.joined = True

    def signal(self, signum: int) -> None:
        if self.exitcode is None:
            self.signals.append(signum)
            if signum == signal.SIGKILL:
                self.exitcode = -signal.SIGKILL

    def exit(self, code: int, *, booted: bool = True) -> None:
        """End it with ``code``; ``booted``: it had loaded its jobs first."""
        block = self.spec.stats_block
        block[Field.BOOTED] = 1 if booted else 0
        self.exitcode = code


class FakeLauncher:
    """Starts ``FakeProcess`` handles and remembers them in order."""

    def __init__(self) -> None:
        self.started: list[FakeProcess] = []

    def __call__(self, spec: ChildSpec) -> FakeProcess:
        process = FakeProcess(10_000 + len(self.started), spec)
        self.started.append(process)
        return process

    def alive(self) -> dict[str, FakeProcess]:
        """The processes still running, by worker name."""
        return {p.spec.name: p for p in self.started if p.exitcode is None}


class FakeControl:
    """The supervisor's queue role: connectors are names, reclaims are recorded."""

    def __init__(self) -> None:
        self.reclaimed: list[tuple[str, str, Collection[str] | None]] = []

    def connector(self, consumer_id: str) -> str:
        return consumer_id

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        self.reclaimed.append((consumer_id, reason, suspects))
        return 0

    def alarms(self) -> list[str]:
        return []

    def check_server(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class Loop:
    """A supervisor on fakes, its clock in ``now``."""

    def __init__(self, processes: int = 1, *, shutdown_timeout_s: float = 5.0) -> None:
        self.now = 100.0
        self.control = FakeControl()
        self.launcher = FakeLauncher()
        settings = SupervisorSettings(
            jobs="tests.jobs:registry",
            shape=shape_pool(PoolKind.PROCESSES, processes),
            worker=WorkerSettings(shutdown_timeout_s=shutdown_timeout_s),
            restart_base_s=1.0,
            restart_cap_s=30.0,
        )
        self.supervisor = Supervisor(
            self.control,  # type: ignore[arg-type]
            settings,
            clock=lambda: self.now,
            launch=self.launcher,
        )
        self.supervisor.start()

    def turn(self, at: float | None = None, signals: SignalLog | None = None) -> None:
        """One turn of the loop at ``at`` (default: now), without waiting."""
        if at is not None:
            self.now = at
        self.supervisor.run_once(0.0, signals=signals)


# -- reap -> decide -> respawn ------------------------------------------------------------------


def test_a_crash_before_any_work_is_restarted_after_its_backoff() -> None:
    # Given one child that dies of SIGKILL a second after it started, before any job
    loop = Loop()
    [first] = loop.launcher.started
    loop.now += 1.0
    first.exit(-signal.SIGKILL)
    # When the loop reaps it
    loop.turn()
    # Then its jobs were reclaimed and no new process runs yet: the first failure waits
    # between base and twice base (1 to 2 s, jitter)
    assert first.joined
    [(consumer_id, reason, suspects)] = loop.control.reclaimed
    assert (consumer_id, suspects) == (first.consumer_id, set())
    assert reason.startswith("worker died: signal 9")
    loop.turn(at=loop.now + 0.99)
    assert len(loop.launcher.started) == 1
    # And by the end of the backoff window a new process fills the seat, under a new name
    loop.turn(at=loop.now + 1.01)
    [_, second] = loop.launcher.started
    assert second.spec.name == "worker-0"
    assert second.consumer_id != first.consumer_id


def test_a_child_that_cannot_boot_stops_the_supervisor_with_boot_failure() -> None:
    # Given two children, one of which exits with BOOT_FAILURE before it booted
    loop = Loop(processes=2)
    broken, healthy = loop.launcher.started
    broken.exit(exitcodes.BOOT_FAILURE, booted=False)
    # When the loop reaps it
    loop.turn()
    # Then the supervisor stops with BOOT_FAILURE: the other child is killed and reclaimed
    # (nothing it ran counts as a suspect), and nothing was restarted
    assert loop.supervisor.exit_code == exitcodes.BOOT_FAILURE
    assert healthy.signals == [signal.SIGKILL]
    assert (healthy.consumer_id, "supervisor stopped", set()) in loop.control.reclaimed
    assert len(loop.launcher.started) == 2


def test_a_recycled_child_is_replaced_in_the_same_turn() -> None:
    loop = Loop()
    [first] = loop.launcher.started
    first.exit(exitcodes.RECYCLE)
    loop.turn()
    assert [p.spec.name for p in loop.launcher.started] == ["worker-0", "worker-0"]


# -- resize -------------------------------------------------------------------------------------


def test_growing_adds_seats_that_start_at_the_next_turn() -> None:
    # Given one child
    loop = Loop()
    # When the pool is resized to 3
    loop.supervisor.resize(3)
    assert len(loop.launcher.started) == 1
    loop.turn()
    # Then two more seats, numbered next, each under a name of its own
    assert sorted(loop.launcher.alive()) == ["worker-0", "worker-1", "worker-2"]
    assert loop.supervisor.size == 3
    assert len({p.consumer_id for p in loop.launcher.started}) == 3


def test_shrinking_sends_the_highest_seats_away_and_never_restarts_them() -> None:
    # Given three children
    loop = Loop(processes=3)
    w0, w1, w2 = loop.launcher.started
    # When the pool shrinks to 1
    loop.supervisor.resize(1)
    # Then the two highest seats are told to stop taking jobs and to drain (SIGTERM)
    assert [w0.signals, w1.signals, w2.signals] == [[], [signal.SIGTERM], [signal.SIGTERM]]
    assert [s.get(Field.STOPPING) for s in loop.supervisor.stats] == [0.0, 1.0, 1.0]
    # And when they exit 0 after their drain, their jobs are reclaimed and their seats go:
    # no crash, no restart, however long the loop turns
    w1.exit(exitcodes.OK)
    w2.exit(exitcodes.OK)
    loop.turn()
    assert {c for c, _, _ in loop.control.reclaimed} == {w1.consumer_id, w2.consumer_id}
    for at in (loop.now + 1, loop.now + 60, loop.now + 3600):
        loop.turn(at=at)
    assert loop.launcher.alive() == {"worker-0": w0}
    assert len(loop.launcher.started) == 3
    assert loop.supervisor.pids() == [w0.pid]


def test_a_seat_sent_away_that_crashes_is_not_restarted_either() -> None:
    loop = Loop(processes=2)
    _, w1 = loop.launcher.started
    loop.supervisor.resize(1)
    w1.exit(-signal.SIGKILL)
    loop.turn()
    loop.turn(at=loop.now + 3600)
    assert len(loop.launcher.started) == 2
    assert loop.supervisor.pids() == [loop.launcher.started[0].pid]


def test_a_seat_that_does_not_drain_in_time_is_stopped_hard_then_killed() -> None:
    # Given a seat sent away with a 5 s shutdown timeout
    loop = Loop(processes=2, shutdown_timeout_s=5.0)
    _, w1 = loop.launcher.started
    loop.supervisor.resize(1)
    # When its drain outlives the deadline / Then SIGQUIT (hand everything back now)
    loop.turn(at=loop.now + 5.0)
    assert w1.signals == [signal.SIGTERM, signal.SIGQUIT]
    # And SIGKILL once the hard stop's grace is over
    loop.turn(at=loop.now + 1.5)
    assert w1.signals == [signal.SIGTERM, signal.SIGQUIT, signal.SIGKILL]
    loop.turn()
    assert loop.supervisor.pids() == [loop.launcher.started[0].pid]


def test_regrowing_while_a_seat_drains_gives_its_number_to_a_new_seat_once_it_is_gone() -> None:
    # Given seat 1 sent away and still draining
    loop = Loop(processes=2)
    _, old = loop.launcher.started
    loop.supervisor.resize(1)
    # When the pool grows back to 2
    loop.supervisor.resize(2)
    loop.turn()
    # Then no second worker-1 runs beside the draining one
    assert len(loop.launcher.started) == 2
    # And once it is gone, a new worker-1 starts, under a consumer id never used before
    old.exit(exitcodes.OK)
    loop.turn()
    loop.turn()
    new = loop.launcher.started[-1]
    assert (new.spec.name, len(loop.launcher.started)) == ("worker-1", 3)
    assert new.consumer_id != old.consumer_id
    assert old.signals == [signal.SIGTERM]


def test_a_seat_waiting_for_its_restart_is_removed_at_once_by_a_shrink() -> None:
    loop = Loop(processes=2)
    _, w1 = loop.launcher.started
    w1.exit(-signal.SIGKILL)
    loop.turn()  # reaped; its restart waits for the backoff
    loop.supervisor.resize(1)
    loop.turn(at=loop.now + 3600)
    assert len(loop.launcher.started) == 2
    assert len(loop.supervisor.stats) == 2  # its counters stay in the totals


def test_resizing_below_one_is_refused() -> None:
    loop = Loop()
    with pytest.raises(ValueError, match="at least 1"):
        loop.supervisor.resize(0)
    assert loop.supervisor.size == 1


def test_resizing_while_stopping_changes_nothing() -> None:
    loop = Loop(processes=2)
    loop.supervisor.stop()
    loop.supervisor.resize(4)
    loop.turn()
    assert loop.supervisor.size == 2
    assert len(loop.launcher.started) == 2


def test_sigttin_and_sigttou_resize_by_one_and_never_below_one() -> None:
    # Given one child and the signals the main loop records
    loop = Loop()
    signals = SignalLog()
    # When SIGTTIN arrives twice / Then two more children
    signals.record(signal.SIGTTIN, None)
    signals.record(signal.SIGTTIN, None)
    loop.turn(signals=signals)
    assert sorted(loop.launcher.alive()) == ["worker-0", "worker-1", "worker-2"]
    # When SIGTTOU arrives three times / Then back to one, the third is refused, no stop
    for _ in range(3):
        signals.record(signal.SIGTTOU, None)
    loop.turn(signals=signals)
    assert loop.supervisor.size == 1
    assert not loop.supervisor.stopping
    assert loop.launcher.alive()["worker-2"].signals == [signal.SIGTERM]


# -- the resize bookkeeping, pure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "leaving", "size", "changes"),
    [
        ([0], [], 3, SeatChanges(add=(1, 2))),
        ([0, 1, 2], [], 1, SeatChanges(leave=(1, 2))),
        ([0, 1, 2], [2], 1, SeatChanges(leave=(1,))),
        ([0, 1, 2], [1, 2], 2, SeatChanges()),
        ([0, 2], [2], 3, SeatChanges(add=(1,))),
        ([0, 1], [], 2, SeatChanges()),
    ],
)
def test_seat_changes(
    present: list[int], leaving: list[int], size: int, changes: SeatChanges
) -> None:
    assert seat_changes(present, leaving, size) == changes


def test_a_size_below_one_is_refused_with_a_clear_message() -> None:
    assert check_size(1) == 1
    with pytest.raises(ValueError, match="cannot resize to 0 worker process"):
        check_size(0)
