"""The limiter's role (``JobLimiter``): concurrency permits held until settled, parked jobs
woken by a release, permits of a dead consumer coming back, fenced releases, smooth rates, and
parking that is neither an attempt nor a failure."""

from __future__ import annotations

import time

from services.limits import ConcurrencyLimit, Limit, RateLimit
from services.protocol import Backend, Delivery
from services.testing.contract.helpers import completion, job, poll
from services.testing.contract.subject import BackendUnderTest

MUTEX = (ConcurrencyLimit("contract-mutex", 1),)
PAIR = (ConcurrencyLimit("contract-pair", 2),)


def admit_next(
    consumer: Backend, limits: tuple[Limit, ...], wait_s: float = 0.2
) -> Delivery | None:
    """Take one job and admit it; the delivery when it may start, else None (none, or parked)."""
    found = consumer.get(["default"], max_count=1, timeout_s=wait_s)
    if found and consumer.admit(found[0], limits):
        return found[0]
    return None


def test_permits_bound_the_jobs_admitted_and_a_release_wakes_a_parked_one(
    backend: BackendUnderTest,
) -> None:
    # Given three jobs under a limit of two permits, taken by one consumer
    backend.root.put_many("default", [job(n) for n in range(3)])
    consumer = backend.consumer("c1")
    held = consumer.get(["default"], max_count=3, timeout_s=1)
    # When each asks to start
    verdicts = [consumer.admit(d, PAIR) for d in held]
    # Then two start and the third is parked: out of flight, waiting, not failed
    assert verdicts == [True, True, False]
    counts = backend.root.counts("default")
    assert (counts.in_flight, counts.waiting + counts.delayed, counts.dead) == (2, 1, 0)
    status = backend.root.status(held[2].job_id)
    assert status is not None and status.status in {"queued", "scheduled"}
    # When one admitted job is acknowledged
    assert consumer.ack([completion(held[0])]) == 0
    # Then the parked one comes back at once (well before the fallback delay) and may start
    started = time.monotonic()
    again = poll(lambda: admit_next(consumer, PAIR), timeout_s=4.0)
    assert again is not None and again.job_id == held[2].job_id
    assert time.monotonic() - started < 4.0


def test_parking_is_not_an_attempt(backend: BackendUnderTest) -> None:
    # Given a mutex held by one consumer, and a second job parked by another
    backend.root.put_many("default", [job(1), job(2)])
    first, second = backend.consumer("c1"), backend.consumer("c2")
    holder = admit_next(first, MUTEX, wait_s=1)
    [parked] = second.get(["default"], timeout_s=1)
    assert holder is not None and not second.admit(parked, MUTEX)
    # When the holder hands its job back (a drain) and the parked job is taken again
    first.hand_back([holder])
    taken = poll(lambda: second.get(["default"], max_count=2, timeout_s=0.2), timeout_s=4.0)
    # Then it comes back as it was: no redelivery, no attempt, no error, nothing dead
    mine = [d for d in taken if d.job_id == parked.job_id]
    assert mine and mine[0].redeliveries == 0 and mine[0].body == parked.body
    status = backend.root.status(parked.job_id)
    assert status is not None and (status.attempts, status.error) == (0, None)
    assert backend.root.counts("default").dead == 0


def test_a_repeated_settlement_releases_nothing_more(backend: BackendUnderTest) -> None:
    # Given a mutex taken by job A, and job B parked behind it
    backend.root.put_many("default", [job(1), job(2), job(3)])
    first, second = backend.consumer("c1"), backend.consumer("c2")
    a = admit_next(first, MUTEX, wait_s=1)
    [b] = second.get(["default"], timeout_s=1)
    assert a is not None and not second.admit(b, MUTEX)
    # When A is acknowledged, B takes the mutex, and A's ack is repeated (a retried call)
    assert first.ack([completion(a)]) == 0
    b_again = poll(lambda: admit_next(second, MUTEX), timeout_s=4.0)
    assert b_again is not None and b_again.job_id == b.job_id
    assert first.ack([completion(a)]) == 0
    # Then B still holds the mutex: the third job may not start
    [c] = first.get(["default"], timeout_s=1)
    assert not first.admit(c, MUTEX)


def test_a_dead_consumers_permits_come_back(backend: BackendUnderTest) -> None:
    # Given a consumer holding the mutex for a running job
    backend.root.put_many("default", [job(1)])
    dying = backend.consumer("c1")
    assert admit_next(dying, MUTEX, wait_s=1) is not None
    # When it dies and the supervisor reclaims its jobs
    dying.close()
    assert backend.root.reclaim("c1", "worker died") == 1
    # Then another consumer runs the job once the permit is back (Redis: within the lease)
    survivor = backend.consumer("c2")
    again = poll(lambda: admit_next(survivor, MUTEX), timeout_s=12.0)
    assert again is not None and again.redeliveries == 1


def test_a_rate_spaces_starts_and_drops_nothing(backend: BackendUnderTest) -> None:
    # Given four jobs under a rate of 5 a second (one start each 0.2 s)
    rate = (RateLimit("contract-rate", 5, 1.0),)
    backend.root.put_many("default", [job(n) for n in range(4)])
    consumer = backend.consumer("c1")
    # When a consumer takes them all and starts what it may, until all have started
    starts: list[float] = []
    deadline = time.monotonic() + 10.0
    while len(starts) < 4 and time.monotonic() < deadline:
        for delivery in consumer.get(["default"], max_count=4, timeout_s=0.2):
            if consumer.admit(delivery, rate):
                starts.append(time.monotonic())
                consumer.ack([completion(delivery)])
    # Then every job started, each at least about one interval after the one before
    assert len(starts) == 4
    assert starts[-1] - starts[0] >= 3 * 0.2 - 0.05
    assert backend.root.counts("default").done == 4


def test_a_permit_taken_is_given_back_when_the_rate_refuses(backend: BackendUnderTest) -> None:
    # Given jobs under two permits and a slow rate, taken by one consumer
    permits = ConcurrencyLimit("contract-both", 2)
    both: tuple[Limit, ...] = (permits, RateLimit("contract-both", 1, 60.0))
    backend.root.put_many("default", [job(n) for n in range(4)])
    consumer = backend.consumer("c1")
    held = consumer.get(["default"], max_count=4, timeout_s=1)
    # When three ask to start under both limits
    verdicts = [consumer.admit(d, both) for d in held[:3]]
    # Then one starts and the rate parks the other two
    assert verdicts == [True, False, False]
    # And they gave back the permits they took: one is still free
    assert consumer.admit(held[3], (permits,))
    assert backend.root.counts("default").in_flight == 2
