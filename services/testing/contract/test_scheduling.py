"""The schedulers' role (``ScheduleStore``): one leader at a time by lease, renewable by its
holder only, given up by ``resign``, taken over when it lapses; fired due times that only move
forward and outlive the connection that wrote them.

**Fixture.** ``store``: the ``backend`` fixture's root connection (a scheduler runs in a root
process). Lease expiry is the backend's clock, polled with a deadline.
"""

from __future__ import annotations

import pytest

from services.protocol import ScheduleStore
from services.testing.contract.helpers import poll
from services.testing.contract.subject import BackendUnderTest

SHORT_LEASE_S = 0.3


@pytest.fixture
def store(backend: BackendUnderTest) -> ScheduleStore:
    """The backend as the schedulers' store."""
    return backend.root


def test_the_first_scheduler_leads_and_the_others_do_not(store: ScheduleStore) -> None:
    # Given no leader yet
    assert store.leader() is None
    # When three schedulers ask for the lease
    answers = [store.lead(name, 30.0) for name in ("a", "b", "c")]
    # Then the first leads, the others are told no, and it is listed as the leader
    assert answers == [True, False, False]
    assert store.leader() == "a"


def test_the_leader_renews_its_lease(store: ScheduleStore) -> None:
    assert store.lead("a", SHORT_LEASE_S)
    # When it renews with a long lease before the short one lapses
    assert store.lead("a", 30.0)
    # Then it still leads after the short lease would have lapsed
    assert not poll(lambda: store.lead("b", 30.0), timeout_s=3 * SHORT_LEASE_S)
    assert store.leader() == "a"


def test_a_lapsed_lease_is_taken_over(store: ScheduleStore) -> None:
    # Given a leader that stops renewing (it died)
    assert store.lead("a", SHORT_LEASE_S)
    # Then another takes the lease once it lapses, and the old one is told no
    assert poll(lambda: store.lead("b", 30.0), timeout_s=5.0)
    assert store.leader() == "b"
    assert not store.lead("a", 30.0)


def test_resign_frees_the_lease_only_for_its_holder(store: ScheduleStore) -> None:
    assert store.lead("a", 30.0)
    # When someone else resigns, nothing changes
    store.resign("b")
    assert store.leader() == "a" and not store.lead("b", 30.0)
    # When the holder resigns, the next one leads at once
    store.resign("a")
    assert store.leader() is None
    assert store.lead("b", 30.0)


def test_each_group_of_entries_has_a_lease_of_its_own(store: ScheduleStore) -> None:
    # Given a leader of the unnamed group
    assert store.lead("a", 30.0)
    # When schedulers of two other groups ask
    # Then each group gets its own leader, and the groups do not see each other's
    assert store.lead("b", 30.0, group="reports")
    assert store.lead("c", 30.0, group="billing")
    assert not store.lead("a", 30.0, group="reports")
    assert (store.leader(), store.leader(group="reports")) == ("a", "b")
    store.resign("b", group="reports")
    assert store.leader(group="reports") is None
    assert store.leader(group="billing") == "c" and store.leader() == "a"


def test_fired_due_times_only_move_forward(store: ScheduleStore) -> None:
    # Given nothing fired
    assert store.last_fired(["report", "poll"]) == {}
    # When due times are marked, one of them older than the one stored
    store.mark_fired("report", 1_700_000_060.0)
    store.mark_fired("report", 1_700_000_000.0)
    store.mark_fired("poll", 1_700_000_001.5)
    # Then each entry keeps its newest, to the millisecond; unknown names are left out
    assert store.last_fired(["report", "poll", "other"]) == {
        "report": 1_700_000_060.0,
        "poll": 1_700_000_001.5,
    }
    assert store.last_fired([]) == {}


def test_fired_due_times_are_kept_per_name(store: ScheduleStore) -> None:
    store.mark_fired("a", 10.0)
    store.mark_fired("b", 20.0)
    store.mark_fired("a", 30.0)
    assert store.last_fired(["b"]) == {"b": 20.0}
    assert store.last_fired(["a", "b"]) == {"a": 30.0, "b": 20.0}
