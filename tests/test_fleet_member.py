"""A supervisor in a fleet, stepped on fake processes and a ``MemoryFleet`` with a fixed clock:
it joins before its first child starts, runs its share (none included), moves the group's total
on SIGTTIN/SIGTTOU, hands paused queues to its children and leaves when it stops; seats leave
idle ones first; a worker fetches from unpaused queues only."""

from __future__ import annotations

import itertools
import signal
import time

from consumer.executors import ThreadExecutor
from consumer.fetching import PAUSABLE, open_queues, pause_mask
from consumer.pool_shape import PoolKind, shape_pool
from consumer.reconcile import Reconciler, ReconcileTiming
from consumer.signals import SignalLog
from consumer.sizing import SeatChanges, check_size, seat_changes
from consumer.supervisor import FleetLink, Supervisor, SupervisorSettings
from consumer.worker import Worker
from producer import Producer
from services.backends import open_queue
from services.backends.memory.fleet import MemoryFleet
from services.errors import BackendUnavailableError
from services.protocol import JobQueue, SupervisorRecord
from services.settings import WorkerSettings
from services.stats import Field, Stats, new_block
from tests import jobs
from tests.test_supervisor_loop import FakeControl, FakeLauncher

TIMING = ReconcileTiming(interval_s=0.5, beat_s=1.0, ttl_s=10.0, resync_s=5.0)


class FleetLoop:
    """A fleet supervisor on fakes; the fleet and the loop share the clock ``now``."""

    def __init__(
        self, processes: int = 1, *, fleet: MemoryFleet | None = None, max_processes: int = 8
    ) -> None:
        self.now = 1000.0
        self.fleet = fleet or MemoryFleet(clock=lambda: self.now)
        self.launcher = FakeLauncher()
        settings = SupervisorSettings(
            jobs="tests.jobs:registry",
            shape=shape_pool(PoolKind.PROCESSES, processes),
            worker=WorkerSettings(queues=("high", "low")),
            group="g",
            max_processes=max_processes,
        )
        self.supervisor = Supervisor(
            FakeControl(),  # type: ignore[arg-type]
            settings,
            clock=lambda: self.now,
            launch=self.launcher,
            fleet=FleetLink(self.fleet, timing=TIMING),
        )

    def turn(self, step: float = 0.5, signals: SignalLog | None = None) -> None:
        self.now += step
        self.supervisor.run_once(0.0, signals=signals)

    def alive(self) -> list[str]:
        return sorted(self.launcher.alive())

    def record(self) -> SupervisorRecord:
        [found] = self.fleet.supervisors()
        return found


def test_it_joins_before_its_first_child_and_runs_its_share_from_the_start() -> None:
    # Given a group that should run 3 processes, and a supervisor started with 1
    loop = FleetLoop(1)
    loop.fleet.set_desired("g", 3, set_by="alice")
    # When it starts / Then its three children start at once, and its record says so
    loop.supervisor.start()
    assert loop.alive() == ["worker-0", "worker-1", "worker-2"]
    loop.turn(1.0)  # the next beat
    record = loop.record()
    assert (record.id, record.group, record.max_processes) == (loop.supervisor.fleet.id, "g", 8)  # type: ignore[union-attr]
    assert (record.processes_desired, record.processes_alive, record.queues) == (
        3,
        3,
        ("high", "low"),
    )


def test_a_share_of_zero_runs_no_worker_and_keeps_beating_until_a_signal() -> None:
    # Given a running supervisor of two processes
    loop = FleetLoop(2)
    loop.supervisor.start()
    # When its group is scaled to 0
    loop.fleet.set_desired("g", 0, set_by="alice")
    loop.turn()
    for process in loop.launcher.started:  # they drain on SIGTERM and exit
        assert process.signals == [signal.SIGTERM]
        process.exit(0)
    for _ in range(30):
        loop.turn()
    # Then it runs none, has not exited, and still beats
    assert loop.alive() == [] and loop.supervisor.exit_code is None
    assert not loop.record().lost and loop.record().processes_desired == 0
    # When the group wants one again / Then it starts one
    loop.fleet.set_desired("g", 1, set_by="alice")
    loop.turn()
    loop.turn()
    assert loop.alive() == ["worker-0"]
    # When it is stopped / Then it leaves the fleet at once
    signals = SignalLog()
    signals.record(signal.SIGTERM, None)
    loop.turn(signals=signals)
    assert loop.fleet.supervisors() == []


def test_sigttin_moves_the_groups_total_not_only_this_supervisor() -> None:
    # Given a supervisor of one process whose group has no desired state yet
    loop = FleetLoop(1)
    loop.supervisor.start()
    signals = SignalLog()
    # When it gets SIGTTIN
    signals.record(signal.SIGTTIN, None)
    loop.turn(signals=signals)
    loop.turn()
    # Then the group wants 2, set by the signal, and the supervisor runs them
    desired = loop.fleet.desired("g")
    assert desired is not None and desired.processes == 2
    assert desired.set_by.startswith("SIGTTIN@")
    assert loop.alive() == ["worker-0", "worker-1"]
    # When SIGTTOU comes three times / Then the group wants 0, never below
    for _ in range(3):
        signals.record(signal.SIGTTOU, None)
        loop.turn(signals=signals)
    desired = loop.fleet.desired("g")
    assert desired is not None and (desired.processes, desired.version) == (0, 3)
    assert loop.supervisor.size == 0


def test_paused_queues_reach_every_childs_stats_block_new_ones_too() -> None:
    # Given a supervisor of one process on queues high and low
    loop = FleetLoop(1)
    loop.supervisor.start()
    # When low is paused
    loop.fleet.pause("low", set_by="alice")
    loop.turn()
    # Then the running child's block marks low (bit 1), and a child started later gets it too
    [first] = loop.launcher.started
    assert first.spec.stats_block[Field.PAUSED] == 0b10
    loop.supervisor.resize(2)
    loop.turn(0.0)
    second = loop.launcher.started[-1]
    assert second.spec.stats_block[Field.PAUSED] == 0b10
    # When it is resumed / Then the mark goes
    loop.fleet.resume("low")
    loop.turn()
    assert first.spec.stats_block[Field.PAUSED] == second.spec.stats_block[Field.PAUSED] == 0


def test_two_supervisors_split_the_total_within_their_maxima() -> None:
    # Given two supervisors on one fleet, at most 4 processes each
    a = FleetLoop(1, max_processes=4)
    b = FleetLoop(1, fleet=a.fleet, max_processes=4)
    b.now = a.now
    b.fleet = a.fleet
    for loop in (a, b):
        loop.supervisor.start()
    # When the group is scaled to 6, and both take a few turns
    a.fleet.set_desired("g", 6, set_by="alice")
    for _ in range(3):
        for loop in (a, b):
            loop.turn()
            b.now = a.now
    # Then they run 3 each (by id: the split is the same in both)
    assert (len(a.alive()), len(b.alive())) == (3, 3)


def test_an_unreachable_backend_is_asked_less_and_less_often() -> None:
    # Given a reconciler whose backend counts the calls and does not answer
    calls: list[float] = []
    now = [0.0]

    class Down:
        def __getattr__(self, name: str) -> object:
            def fail(*args: object, **kwargs: object) -> None:
                calls.append(now[0])
                raise BackendUnavailableError("Redis at x did not answer in 5 s")

            return fail

    record = SupervisorRecord("a", "g", 4)
    rec = Reconciler(Down(), lambda: record, lambda n: None, timing=TIMING)  # type: ignore[arg-type]
    # When its supervisor's loop turns every 0.1 s for a minute
    for step in range(600):
        now[0] = step / 10
        rec.run_once(now[0])
    # Then the backend was tried at growing intervals (1, 2, 4, 8 s, then every 10 s)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(calls)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0] and set(gaps[4:]) == {10.0}
    assert rec.in_trouble


def test_a_shrink_sends_idle_seats_away_first() -> None:
    # Given seats 0..3 where 1 and 3 run jobs / When the pool shrinks to 2
    changes = seat_changes([0, 1, 2, 3], [], 2, busy=[1, 3])
    # Then the idle ones leave (2, then 0), the busy ones finish in peace
    assert changes == SeatChanges(leave=(0, 2))
    # And with every seat busy, the highest numbers go
    assert seat_changes([0, 1, 2], [], 1, busy=[0, 1, 2]) == SeatChanges(leave=(1, 2))


def test_a_grow_waits_for_leaving_seats_so_the_maximum_holds() -> None:
    # Given 4 seats of which 2 are leaving / When it grows back to 4: no new seat yet
    assert seat_changes([0, 1, 2, 3], [1, 3], 4) == SeatChanges()
    # When one of them was removed / Then its number is free again and taken
    assert seat_changes([0, 2, 3], [3], 4) == SeatChanges(add=(1,))


def test_a_fleet_may_resize_to_zero_a_lone_supervisor_may_not() -> None:
    assert check_size(0, minimum=0) == 0
    for minimum in (0, 1):
        try:
            check_size(-1, minimum=minimum)
        except ValueError as exc:
            assert "cannot resize to -1" in str(exc)
        else:
            raise AssertionError("a negative size was accepted")


def test_the_pause_mask_marks_queues_by_position() -> None:
    queues = ("a", "b", "c")
    assert pause_mask(queues, {"b", "x"}) == 0b010
    assert open_queues(queues, 0b010) == ("a", "c")
    assert open_queues(queues, 0b111) == ()
    many = tuple(f"q{i}" for i in range(PAUSABLE + 5))
    assert pause_mask(many, set(many)) == 2**PAUSABLE - 1  # exact in a double
    assert float(2**PAUSABLE - 1) == 2**PAUSABLE - 1


def test_a_worker_takes_nothing_from_a_paused_queue() -> None:
    # Given jobs on queues high and low, and a worker whose supervisor paused low
    queue: JobQueue = open_queue("memory://")
    kept = Producer(queue, registry=jobs.registry, name="low").enqueue("add", 1, 1)
    taken = Producer(queue, registry=jobs.registry, name="high").enqueue("add", 2, 2)
    stats = Stats(new_block())
    stats.set(Field.PAUSED, pause_mask(("high", "low"), {"low"}))
    worker = Worker(
        queue, jobs.registry, ThreadExecutor(1),
        WorkerSettings(queues=("high", "low"), poll_s=0.05), stats=stats,
    )  # fmt: skip
    worker.start()
    try:
        # When it turns until high's job is done, and a while more
        deadline = time.monotonic() + 10
        while _status(queue, taken.id) != "done":
            assert time.monotonic() < deadline
            worker.run_once()
        for _ in range(5):
            worker.run_once()
        # Then low's job still waits; with every queue paused, a turn waits and fetches nothing
        assert _status(queue, kept.id) == "queued"
        stats.set(Field.PAUSED, 0b11)
        started = time.monotonic()
        worker.run_once()
        assert time.monotonic() - started >= 0.04 and worker.idle
        # When low is resumed / Then its job runs
        stats.set(Field.PAUSED, 0)
        while _status(queue, kept.id) != "done":
            assert time.monotonic() < deadline
            worker.run_once()
    finally:
        worker.stop_now()
        queue.close()


def _status(queue: JobQueue, job_id: str) -> str | None:
    found = queue.status(job_id)
    return found.status if found else None
