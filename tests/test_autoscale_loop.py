"""``consumer.autoscale_loop``: only the group's leader decides; it reads the backlog of the
group's unpaused queues, writes a change with the bounds, its reason and a compare-and-set, and
an operator's change wins. A ``MemoryFleet`` and fake queue counts, on a fixed clock."""

from __future__ import annotations

import pytest

from consumer.autoscale import AutoscaleState, Load, decide
from consumer.autoscale_loop import AutoscaleLoop
from services.backends.memory.fleet import MemoryFleet
from services.protocol import AutoscaleSettings, QueueCounts, SupervisorRecord

BOUNDS = AutoscaleSettings(1, 8, 10, stabilization_s=5.0, tolerance=0.0)


class Counts:
    """A ``QueueInspector`` of which only ``counts`` is used: the waiting jobs per queue."""

    def __init__(self, **waiting: int) -> None:
        self.waiting = waiting
        self.done = 0

    def counts(self, queue: str) -> QueueCounts:
        return QueueCounts(waiting=self.waiting.get(queue, 0), done=self.done)


@pytest.fixture
def fleet() -> MemoryFleet:
    store = MemoryFleet()
    for name, queues in (("a", ("emails",)), ("b", ("emails", "reports"))):
        store.beat(SupervisorRecord(name, "g", 4, queues=queues, jobs_running=1), 60.0)
    store.set_desired("g", 1, set_by="alice", autoscale=BOUNDS)
    return store


def loop_of(fleet: MemoryFleet, me: str, counts: Counts) -> AutoscaleLoop:
    return AutoscaleLoop(fleet, counts, me=me, group="g", every_s=1.0)  # type: ignore[arg-type]


def test_only_the_leader_decides_and_it_writes_a_growth_with_its_reason(fleet: MemoryFleet) -> None:
    # Given a backlog of 45 over the group's queues (10 per worker) and both supervisors' loops
    counts = Counts(emails=30, reports=15)
    follower, leader = loop_of(fleet, "b", counts), loop_of(fleet, "a", counts)
    # When both turn / Then b (not first by id) does nothing; a grows the group to 5 at once
    assert follower.run_once(0.0) is None
    decision = leader.run_once(0.0)
    assert decision is not None and decision.changed
    desired = fleet.desired("g")
    assert desired is not None
    assert (desired.processes, desired.version, desired.autoscale) == (5, 2, BOUNDS)
    assert desired.set_by == "autoscale@a"
    assert "backlog 45 / 10 per worker -> 5" in desired.reason and "grow 1 -> 5" in desired.reason


def test_turns_are_spaced_and_a_shrink_waits_for_the_window(fleet: MemoryFleet) -> None:
    counts = Counts(emails=80)
    leader = loop_of(fleet, "a", counts)
    leader.run_once(0.0)
    assert leader.run_once(0.5) is None  # not due yet
    # When the backlog is gone / Then it holds 8 until 5 s of lower targets were seen
    counts.waiting = {}
    held = [leader.run_once(float(t)) for t in range(1, 5)]
    assert all(d is not None and not d.changed for d in held)
    shrunk = leader.run_once(5.0)
    assert shrunk is not None and shrunk.changed and shrunk.desired == 1
    desired = fleet.desired("g")
    assert desired is not None and desired.processes == 1


def test_a_paused_queue_is_no_backlog(fleet: MemoryFleet) -> None:
    fleet.pause("emails")
    leader = loop_of(fleet, "a", Counts(emails=500, reports=20))
    decision = leader.run_once(0.0)
    assert decision is not None and decision.desired == 2


def test_an_operators_change_wins_over_a_decision_from_an_older_state(fleet: MemoryFleet) -> None:
    # Given a leader that has decided once
    counts = Counts(emails=30)
    leader = loop_of(fleet, "a", counts)
    leader.run_once(0.0)
    # When an operator turns autoscale off by setting a count by hand
    fleet.set_desired("g", 2, set_by="alice")
    counts.waiting = {"emails": 80}
    # Then the leader no longer decides, and the operator's count stays
    assert leader.run_once(1.0) is None
    desired = fleet.desired("g")
    assert desired is not None and (desired.processes, desired.set_by) == (2, "alice")
    # When autoscale is turned on again / Then the leader decides from the new state
    fleet.set_desired("g", 2, set_by="alice", autoscale=BOUNDS)
    decision = leader.run_once(2.0)
    assert decision is not None and (decision.previous, decision.desired) == (2, 8)


def test_a_lost_leader_hands_the_lead_to_the_next(fleet: MemoryFleet) -> None:
    fleet.leave("a")
    decision = loop_of(fleet, "b", Counts(emails=30)).run_once(0.0)
    assert decision is not None and decision.desired == 3


def test_a_window_shorter_than_the_spacing_of_decisions_still_shrinks() -> None:
    # Given a 1 s window (a test's, or an impatient operator's) and decisions every 1.05 s
    bounds = AutoscaleSettings(1, 4, 2, stabilization_s=1.0, tolerance=0.0)
    state = AutoscaleState.start(4, 0.0)
    # When the backlog is gone / Then the second reading on shrinks (two readings, 1 s apart)
    desired = []
    for step in range(4):
        decision = decide(Load(0), bounds, state, now=step * 1.05)
        desired.append(decision.desired)
        state = decision.state
    assert desired == [4, 1, 1, 1]
