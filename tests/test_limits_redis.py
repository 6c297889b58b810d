"""Concurrency permits on a real redis-server, where only Redis can show it: a permit is held
with the lease (the heartbeat renews it while a job runs longer than the lease), and it lapses
within the lease once its holder stops beating."""

from __future__ import annotations

import time

import pytest

from services.limits import ConcurrencyLimit
from services.protocol import Completion
from tests.redis_fixtures import MakeQueue

pytestmark = pytest.mark.redis

MUTEX = (ConcurrencyLimit("held-with-lease", 1),)


def test_a_permit_outlives_the_lease_while_its_holder_beats_and_lapses_after(
    make_queue: MakeQueue,
) -> None:
    # Given a consumer on a 1 s lease holding a mutex, and a second job for it
    holder, other = make_queue("holder", lease_s=1.0), make_queue("other", lease_s=1.0)
    holder.put_many("default", [("first", b"x"), ("second", b"y")])
    [first] = holder.get(["default"], timeout_s=1)
    assert holder.admit(first, MUTEX)
    # When the job runs for three leases while the heartbeat renews the permit
    time.sleep(3.0)  # the span being tested: the heartbeat must renew it meanwhile
    [second] = other.get(["default"], timeout_s=1)
    # Then the mutex is still held: the second job is parked
    assert not other.admit(second, MUTEX)
    # When the holder stops beating without settling (it died)
    holder._heartbeat.stop()
    stopped = time.monotonic()
    # Then the permit lapses within the lease, and both jobs come back and run, one at a time:
    # the parked second job, and the first one (its holder's lease lapsed too), in either order
    ran: list[str] = []
    deadline = stopped + 15.0  # lease + the longest park, with room for a busy machine
    while len(ran) < 2 and time.monotonic() < deadline:
        found = other.get(["default"], timeout_s=0.5)
        if found and other.admit(found[0], MUTEX):
            ran.append(found[0].job_id)
            assert other.ack([Completion(found[0])]) == 0
    assert sorted(ran) == ["first", "second"], f"the permit never lapsed: ran {ran}"
