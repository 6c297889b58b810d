"""``consumer.reconcile``: supervisors on a ``MemoryFleet`` beat, split the group's desired total
between them and resize to their share; bounded turns, poked turns, periodic resync, outages.
Fake supervisors (a size and the resize calls) and one fake clock for the fleet and the turns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer.reconcile import Reconciler, ReconcileTiming
from services.backends.memory.fleet import MemoryFleet
from services.backends.redis.fleet import RedisFleet
from services.errors import BackendUnavailableError
from services.protocol.fleet import FleetControl, SupervisorRecord

TIMING = ReconcileTiming(interval_s=0.5, beat_s=1.0, ttl_s=10.0, resync_s=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSupervisor:
    id: str
    size: int = 1
    max_processes: int = 8
    group: str = "g"
    resizes: list[int] = field(default_factory=list)

    def report(self) -> SupervisorRecord:
        return SupervisorRecord(
            self.id, self.group, self.max_processes, processes_desired=self.size
        )

    def resize(self, size: int) -> None:
        self.resizes.append(size)
        self.size = size


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fleet(clock: Clock) -> MemoryFleet:
    return MemoryFleet(clock=clock)


def reconciler(fleet: FleetControl, sup: FakeSupervisor, **kwargs: Any) -> Reconciler:
    return Reconciler(fleet, sup.report, sup.resize, timing=TIMING, **kwargs)


def turn_all(pairs: Pairs, clock: Clock, step: float) -> None:
    """Advance the clock by ``step`` and give every supervisor a turn."""
    clock.now += step
    for rec, _ in pairs:
        rec.run_once(clock.now)


Pairs = list[tuple[Reconciler, FakeSupervisor]]


def two_settled(fleet: MemoryFleet, clock: Clock, total: int) -> tuple[Pairs, FakeSupervisor]:
    """Supervisors a and b of one process each, after two turns at a desired ``total``."""
    fleet.set_desired("g", total, set_by="alice")
    a, b = FakeSupervisor("a"), FakeSupervisor("b")
    pairs = [(reconciler(fleet, a), a), (reconciler(fleet, b), b)]
    turn_all(pairs, clock, 0.0)
    turn_all(pairs, clock, 0.5)  # b's arrival moved the revision: a splits again
    return pairs, a


def test_without_a_desired_state_a_supervisor_beats_and_keeps_its_size(
    fleet: MemoryFleet, clock: Clock
) -> None:
    sup = FakeSupervisor("a", size=3)
    turn = reconciler(fleet, sup).run_once(clock.now)
    assert turn is not None and turn.share is None
    assert sup.resizes == []
    assert [r.id for r in fleet.supervisors()] == ["a"]


def test_two_supervisors_split_the_desired_total(fleet: MemoryFleet, clock: Clock) -> None:
    # Given a group that should run 6 processes, When two supervisors take two turns each
    pairs, a = two_settled(fleet, clock, 6)
    b = pairs[1][1]
    # Then they run 3 each: a first took all 6 alone, then gave half to b
    assert (a.size, b.size) == (3, 3)
    assert a.resizes == [6, 3] and b.resizes == [3]


def test_a_new_desired_total_is_taken_at_the_next_turn(fleet: MemoryFleet, clock: Clock) -> None:
    fleet.set_desired("g", 2, set_by="alice")
    a = FakeSupervisor("a")
    rec = reconciler(fleet, a)
    rec.run_once(clock.now)
    # When an operator scales the group to 5
    fleet.set_desired("g", 5, set_by="alice")
    # Then nothing happens within the turn interval, and the next turn resizes
    assert rec.run_once(clock.now + 0.1) is None and a.size == 2
    turn = rec.run_once(clock.now + 0.5)
    assert turn is not None and turn.resized and a.size == 5
    assert "wants 5 (version 2) across 1 supervisor(s): this one runs 5" in turn.note


def test_turns_are_bounded_and_quiet_when_nothing_changed(clock: Clock) -> None:
    # Given a fleet that counts the calls made to it
    counted = Counting(MemoryFleet(clock=clock))
    counted.set_desired("g", 2, set_by="alice")
    a = FakeSupervisor("a")
    rec = reconciler(counted, a)
    # When the supervisor's loop turns every 10 ms for two seconds
    for step in range(200):
        rec.run_once(clock.now + step * 0.01)
    # Then there were 4 turns (one per 0.5 s): 2 beats, 4 revision reads, 1 full reconcile
    assert counted.calls["revision"] == 4
    assert counted.calls["beat"] == 2
    assert counted.calls["desired"] == counted.calls["supervisors"] == 1


def test_a_poke_makes_the_next_call_a_full_turn(fleet: MemoryFleet, clock: Clock) -> None:
    a = FakeSupervisor("a")
    rec = reconciler(fleet, a)
    rec.run_once(clock.now)
    fleet.set_desired("g", 4, set_by="alice")
    rec.poke()
    turn = rec.run_once(clock.now + 0.01)
    assert turn is not None and a.size == 4


def test_a_silent_peer_is_noticed_by_the_periodic_resync(fleet: MemoryFleet, clock: Clock) -> None:
    # Given two supervisors sharing 6
    pairs, a = two_settled(fleet, clock, 6)
    assert [s.size for _, s in pairs] == [3, 3]
    # When b stops beating (SIGKILL: no leave, so the revision does not move)
    survivor = pairs[:1]
    for _ in range(int((TIMING.ttl_s + TIMING.resync_s) / 0.5) + 1):
        turn_all(survivor, clock, 0.5)
    # Then a sees b lost at a periodic turn and runs the whole total
    assert [r.lost for r in fleet.supervisors()] == [False, True]
    assert a.size == 6


def test_a_supervisor_that_leaves_hands_its_share_to_peers(
    fleet: MemoryFleet, clock: Clock
) -> None:
    pairs, a = two_settled(fleet, clock, 4)
    assert a.size == 2
    # When b stops cleanly / Then a takes over at its next turn (the revision moved)
    pairs[1][0].leave()
    turn_all(pairs[:1], clock, 0.5)
    assert a.size == 4


def test_a_share_of_zero_and_a_capped_total(fleet: MemoryFleet, clock: Clock) -> None:
    # Given three supervisors of at most 2 processes
    sups = [FakeSupervisor(name, max_processes=2) for name in "abc"]
    pairs = [(reconciler(fleet, s), s) for s in sups]
    # When the group wants 1 / Then the first runs it and the others none
    fleet.set_desired("g", 1, set_by="alice")
    turn_all(pairs, clock, 0.0)
    turn_all(pairs, clock, 0.5)
    assert [s.size for s in sups] == [1, 0, 0]
    # When it wants 10 / Then each runs its maximum and the turn says the total is capped
    fleet.set_desired("g", 10, set_by="alice")
    clock.now += 0.5
    turn = pairs[0][0].run_once(clock.now)
    turn_all(pairs[1:], clock, 0.0)
    assert [s.size for s in sups] == [2, 2, 2]
    assert turn is not None and "run at most 6" in turn.note


def test_other_groups_do_not_count(fleet: MemoryFleet, clock: Clock) -> None:
    fleet.set_desired("g", 4, set_by="alice")
    a, other = FakeSupervisor("a"), FakeSupervisor("0", group="other")
    pairs = [(reconciler(fleet, other), other), (reconciler(fleet, a), a)]
    turn_all(pairs, clock, 0.0)
    assert (a.size, other.size) == (4, 1)


def test_paused_queues_are_handed_over_when_they_change(fleet: MemoryFleet, clock: Clock) -> None:
    seen: list[frozenset[str]] = []
    rec = reconciler(fleet, FakeSupervisor("a"), pauses=seen.append)
    rec.run_once(clock.now)
    fleet.pause("emails")
    rec.run_once(clock.now + 0.5)
    rec.run_once(clock.now + 6)  # a resync: nothing changed, nothing handed
    fleet.resume("emails")
    rec.run_once(clock.now + 6.5)
    assert seen == [frozenset(), frozenset({"emails"}), frozenset()]


def test_an_unreachable_backend_keeps_the_size_and_is_said_once(
    fleet: MemoryFleet, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a supervisor at its share of 3
    flaky = Flaky(fleet)
    fleet.set_desired("g", 3, set_by="alice")
    a = FakeSupervisor("a")
    rec = reconciler(flaky, a)
    rec.run_once(clock.now)
    assert a.size == 3
    # When the backend stops answering for three turns
    flaky.down = True
    with caplog.at_level(logging.INFO, logger="conveyor.fleet"):
        for step in (1, 2, 3):
            assert rec.run_once(clock.now + step) is None
        flaky.down = False
        fleet.set_desired("g", 5, set_by="alice")
        rec.run_once(clock.now + 4)
    # Then the size held, the outage was logged once, and the next turn caught up
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "did not answer" in warnings[0].getMessage()
    assert "answers again" in caplog.text
    assert a.resizes == [3, 5]


class Counting:
    """A FleetControl that counts the calls made to it."""

    def __init__(self, inner: MemoryFleet) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        return getattr(self.inner, name)


class Flaky:
    """A FleetControl whose backend can be made unreachable."""

    def __init__(self, inner: MemoryFleet) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:
            raise BackendUnavailableError("cannot read the fleet: Redis is unreachable")
        return getattr(self.inner, name)


@pytest.mark.redis
def test_two_supervisors_on_redis_reach_the_total_set_by_another_connection(
    redis_url: str,
) -> None:
    # Given two supervisors reconciling through their own connections, and an operator's
    stores = [RedisFleet.open(redis_url) for _ in range(3)]
    a, b = FakeSupervisor("a"), FakeSupervisor("b")
    pairs = [(reconciler(stores[0], a), a), (reconciler(stores[1], b), b)]
    clock = Clock()
    try:
        turn_all(pairs, clock, 0.0)
        # When the operator scales the group to 7
        stores[2].set_desired("g", 7, set_by="alice")
        turn_all(pairs, clock, 0.5)
        turn_all(pairs, clock, 0.5)
        # Then the supervisors run 4 + 3, and the fleet lists them with their sizes
        assert (a.size, b.size) == (4, 3)
        turn_all(pairs, clock, TIMING.beat_s)
        listed = {r.id: r.processes_desired for r in stores[2].supervisors()}
        assert listed == {"a": 4, "b": 3}
    finally:
        for store in stores:
            store.close()
