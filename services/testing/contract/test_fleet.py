"""The fleet role (``FleetControl``): registry with lost-then-dropped supervisors, versioned
desired states with compare-and-set, persisted pauses, and a revision that moves on changes.

**Fixture.** These tests take ``fleet``: what the ``backend`` fixture's root connection hands
out (``Backend.fleet()``), as empty as the backend is. Times here are short TTLs polled with a
deadline: a backend stamps beats with its own clock (Redis ``TIME``), which a test cannot step.
"""

from __future__ import annotations

import threading
import time

import pytest

from services.protocol.fleet import (
    LOST_KEEP_FACTOR,
    AutoscaleSettings,
    FleetControl,
    PauseState,
    SupervisorRecord,
)
from services.testing.contract.helpers import poll
from services.testing.contract.subject import BackendUnderTest

SHORT_TTL_S = 0.1
"""A TTL short enough to see a supervisor lost, then dropped, within a test."""
CLOCK_SLACK_S = 5.0
"""How far the backend's clock may be from this process's (same host: far less)."""


@pytest.fixture
def fleet(backend: BackendUnderTest) -> FleetControl:
    """The backend's fleet state, closed with the backend."""
    return backend.root.fleet()


def record(supervisor_id: str = "s1", group: str = "g", **fields: object) -> SupervisorRecord:
    """A supervisor's record as it beats it."""
    return SupervisorRecord(supervisor_id, group, 4, **fields)  # type: ignore[arg-type]


def test_a_beat_registers_the_record_as_it_was_given(fleet: FleetControl) -> None:
    # Given a supervisor's full record
    mine = record(
        host="h1", pid=42, queues=("a", "b"), pool="threads", processes_desired=3,
        processes_alive=2, jobs_running=5, jobs_done=7, started_at=1.5e9, conveyor_version="1.2",
    )  # fmt: skip
    # When it beats
    fleet.beat(mine, 30.0)
    # Then it is listed as given, live, its beat stamped by the backend's clock
    [listed] = fleet.supervisors()
    assert listed == SupervisorRecord(**{**vars(mine), "last_beat": listed.last_beat})
    assert abs(listed.last_beat - time.time()) < CLOCK_SLACK_S
    assert isinstance(listed.queues, tuple)
    assert not listed.lost


def test_a_second_beat_replaces_the_record(fleet: FleetControl) -> None:
    fleet.beat(record(processes_alive=1), 30.0)
    fleet.beat(record(processes_alive=3), 30.0)
    assert [r.processes_alive for r in fleet.supervisors()] == [3]


def test_supervisors_are_listed_by_id(fleet: FleetControl) -> None:
    for name in ("s3", "s1", "s2"):
        fleet.beat(record(name), 30.0)
    assert [r.id for r in fleet.supervisors()] == ["s1", "s2", "s3"]


def test_leave_forgets_a_supervisor_at_once(fleet: FleetControl) -> None:
    fleet.beat(record("s1"), 30.0)
    fleet.beat(record("s2"), 30.0)
    fleet.leave("s1")
    fleet.leave("never-seen")  # ignored
    assert [r.id for r in fleet.supervisors()] == ["s2"]


def test_a_silent_supervisor_is_listed_lost_then_dropped(fleet: FleetControl) -> None:
    # Given a supervisor that beat once with a short TTL, and one that keeps beating
    fleet.beat(record("silent"), SHORT_TTL_S)
    fleet.beat(record("alive"), 60.0)
    # When the first stops beating / Then it is listed lost, the other is not
    lost = poll(lambda: [r.id for r in fleet.supervisors() if r.lost], timeout_s=5)
    assert lost == ["silent"]
    # And after LOST_KEEP_FACTOR TTLs it is no longer listed
    gone = poll(lambda: [r.id for r in fleet.supervisors()] == ["alive"], timeout_s=10)
    assert gone, f"still listed after {LOST_KEEP_FACTOR} TTLs: {fleet.supervisors()}"


def test_a_lost_supervisor_that_beats_again_is_live(fleet: FleetControl) -> None:
    fleet.beat(record(), SHORT_TTL_S)
    assert poll(lambda: fleet.supervisors()[0].lost, timeout_s=5)
    before = fleet.revision()
    # When it beats again
    fleet.beat(record(), 60.0)
    # Then it is live, and its return moved the revision (peers must split again)
    assert not fleet.supervisors()[0].lost
    assert fleet.revision() != before


def test_desired_states_are_versioned_from_one(fleet: FleetControl) -> None:
    # Given no state for the group
    assert fleet.desired("g") is None
    # When an operator sets it twice
    first = fleet.set_desired("g", 6, set_by="alice@h1")
    second = fleet.set_desired("g", 2, set_by="bob@h2")
    # Then each change got the next version, the backend's time, and the last one is read back
    assert first is not None and second is not None
    assert (first.version, second.version) == (1, 2)
    assert fleet.desired("g") == second
    assert (second.group, second.processes, second.set_by) == ("g", 2, "bob@h2")
    assert abs(second.set_at - time.time()) < CLOCK_SLACK_S
    assert second.autoscale is None


def test_an_autoscaled_state_keeps_its_bounds_and_reason(fleet: FleetControl) -> None:
    bounds = AutoscaleSettings(1, 8, 100, stabilization_s=30.0, tolerance=0.2)
    fleet.set_desired("g", 3, set_by="autoscale", autoscale=bounds, reason="backlog 300 -> 3")
    found = fleet.desired("g")
    assert found is not None
    assert (found.autoscale, found.reason) == (bounds, "backlog 300 -> 3")


def test_set_desired_refuses_impossible_counts(fleet: FleetControl) -> None:
    with pytest.raises(ValueError, match="-1"):
        fleet.set_desired("g", -1, set_by="x")
    with pytest.raises(ValueError, match="bounds"):
        fleet.set_desired("g", 9, set_by="x", autoscale=AutoscaleSettings(1, 8, 10))
    assert fleet.desired("g") is None


def test_set_desired_with_if_version_is_a_compare_and_set(fleet: FleetControl) -> None:
    # Given a group without a state: 0 is its version
    made = fleet.set_desired("g", 4, set_by="autoscale", if_version=0)
    assert made is not None and made.version == 1
    # When an operator changes it, and the autoscaler then writes against the version it read
    fleet.set_desired("g", 2, set_by="alice")
    stale = fleet.set_desired("g", 5, set_by="autoscale", if_version=1)
    # Then the stale write changes nothing; one against the current version goes through
    assert stale is None
    current = fleet.desired("g")
    assert current is not None and (current.processes, current.set_by) == (2, "alice")
    assert fleet.set_desired("g", 5, set_by="autoscale", if_version=2) is not None
    assert fleet.set_desired("other", 1, set_by="x", if_version=3) is None


def test_concurrent_writers_never_get_the_same_version(fleet: FleetControl) -> None:
    # Given eight writers setting the same group at once
    versions: list[int] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        for i in range(10):
            state = fleet.set_desired("g", n * 10 + i, set_by=f"w{n}")
            assert state is not None
            with lock:
                versions.append(state.version)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then every change got its own version, with none skipped
    assert sorted(versions) == list(range(1, 81))
    final = fleet.desired("g")
    assert final is not None and final.version == 80


def test_groups_name_desired_states_and_listed_supervisors(fleet: FleetControl) -> None:
    fleet.set_desired("emails", 2, set_by="x")
    fleet.beat(record("s1", group="reports"), 30.0)
    fleet.beat(record("s2", group="emails"), 30.0)
    assert fleet.groups() == ["emails", "reports"]


def test_pause_and_resume_a_queue(fleet: FleetControl) -> None:
    # Given nothing paused
    assert fleet.paused() == set()
    # When two queues are paused (one twice) and one of them resumed
    assert fleet.pause("emails", set_by="alice")
    assert not fleet.pause("emails", set_by="bob")
    assert fleet.pause("reports")
    assert fleet.resume("reports")
    assert not fleet.resume("reports")
    # Then the first stays paused, by whom it was first paused, when
    assert fleet.paused() == {"emails"}
    [state] = fleet.pauses()
    assert (state.queue, state.set_by) == ("emails", "alice")
    assert abs(state.set_at - time.time()) < CLOCK_SLACK_S
    assert isinstance(state, PauseState)


def test_the_revision_moves_on_changes_only(fleet: FleetControl) -> None:
    revisions = [fleet.revision()]

    def moved() -> bool:
        revisions.append(fleet.revision())
        return revisions[-1] != revisions[-2]

    fleet.beat(record("s1"), 30.0)
    assert moved(), "a supervisor joined"
    fleet.beat(record("s1", processes_alive=2), 30.0)
    assert not moved(), "a live supervisor's beat is no change"
    fleet.set_desired("g", 3, set_by="x")
    assert moved(), "a desired state changed"
    fleet.pause("q")
    assert moved(), "a queue was paused"
    fleet.pause("q")
    assert not moved(), "pausing a paused queue changes nothing"
    fleet.resume("q")
    assert moved(), "a queue was resumed"
    fleet.leave("s1")
    assert moved(), "a supervisor left"
    fleet.leave("s1")
    assert not moved(), "leaving twice changes nothing"
