"""Unique jobs through the ``Producer``: the key a call holds, ``unique_for``, enqueue again.

On the memory backend and on the suite's real redis-server (``any_queue``); the backends'
own rules are the contract suite's (``services.testing.contract.test_unique``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from producer import Producer
from services.errors import EncodeError
from services.protocol import Backend, Completion
from services.registry import Registry
from services.testing.contract.helpers import poll
from services.unique_keys import InvalidUniqueKeyError, arguments_key, uniqueness
from tests.test_producer import any_queue

__all__ = ["any_queue"]  # the fixture (memory, or the suite's redis-server), for pytest

registry = Registry()


@registry.job(unique=True)
def report(user: int, *, kind: str = "daily") -> str:
    return f"{kind} report for {user}"


@registry.job(unique_for=0.5)
def ping(host: str) -> str:
    return host


@registry.job
def plain(n: int) -> int:
    return n


def drain(queue: Backend) -> list[str]:
    """Take and ack every job visible now (waiting up to 2 s for the first); their ids."""
    found = poll(lambda: queue.get(["default"], max_count=100, timeout_s=0.2), timeout_s=2)
    queue.ack([Completion(d) for d in found])
    return [d.job_id for d in found]


def test_the_key_is_the_name_and_a_digest_of_the_arguments() -> None:
    key = arguments_key("report", (7,), {"kind": "weekly", "a": 1})
    assert key.startswith("report:") and len(key) == len("report:") + 32
    assert key == arguments_key("report", [7], {"a": 1, "kind": "weekly"})  # kwargs order
    assert key != arguments_key("report", (8,), {"kind": "weekly", "a": 1})
    assert key != arguments_key("other", (7,), {"kind": "weekly", "a": 1})
    with pytest.raises(EncodeError):
        arguments_key("report", ({1, 2},), {})


def test_what_makes_a_call_unique() -> None:
    assert uniqueness(registry, "plain", ((1,), {}), None) is None
    assert uniqueness(None, "plain", ((1,), {}), None) is None
    found = uniqueness(registry, "ping", (("h",), {}), None)
    assert found is not None and found.ttl_s == 0.5
    caller = uniqueness(None, "anything", ((), {}), "mine")
    assert caller is not None and (caller.key, caller.ttl_s) == ("mine", None)
    for bad in ("", "x" * 1025, 17):
        with pytest.raises(InvalidUniqueKeyError):
            uniqueness(registry, "plain", ((1,), {}), bad)  # type: ignore[arg-type]


def test_a_unique_job_enqueued_twice_is_stored_once(any_queue: Backend) -> None:
    # Given a job registered unique=True, enqueued once
    producer = Producer(any_queue, registry=registry)
    first = producer.enqueue("report", 7, kind="weekly")

    # When it is enqueued again with the same arguments, and once with others
    again = producer.enqueue("report", 7, kind="weekly")
    later = producer.enqueue_in(30, "report", 7, kind="weekly")
    other = producer.enqueue("report", 8, kind="weekly")

    # Then the repeats carry the first job's id, and only two jobs are stored
    assert again.id == later.id == first.id
    assert other.id != first.id
    assert sorted(drain(any_queue)) == sorted([first.id, other.id])


def test_a_finished_unique_job_can_be_enqueued_again(any_queue: Backend) -> None:
    producer = Producer(any_queue, registry=registry)
    first = producer.enqueue("report", 1)
    assert drain(any_queue) == [first.id]

    second = producer.enqueue("report", 1)

    assert second.id != first.id
    assert drain(any_queue) == [second.id]


def test_unique_for_lapses_while_the_job_still_waits(any_queue: Backend) -> None:
    # Given a job registered unique_for=0.5, still queued
    producer = Producer(any_queue, registry=registry)
    first = producer.enqueue("ping", "db1")
    assert producer.enqueue("ping", "db1").id == first.id
    started = time.monotonic()

    # When its half second has passed, enqueueing it again stores a second job
    second = poll(lambda: _new(producer.enqueue("ping", "db1").id, first.id), timeout_s=10)

    # Then no earlier than the TTL, and both jobs are there
    assert second
    assert time.monotonic() - started >= 0.45
    assert any_queue.counts("default").waiting == 2


def _new(found: str, old: str) -> str:
    return "" if found == old else found


def test_a_caller_key_makes_any_job_unique(any_queue: Backend) -> None:
    # Without a registry, and for a job not registered unique
    bare = Producer(any_queue)
    first = bare.enqueue("anything", 1, unique_key="nightly-2026-11-30")
    assert bare.enqueue("anything", 2, unique_key="nightly-2026-11-30").id == first.id
    checked = Producer(any_queue, registry=registry)
    job = checked.enqueue("plain", 1, unique_key="p")
    assert checked.enqueue("plain", 2, unique_key="p").id == job.id
    assert checked.enqueue_at(datetime.now(UTC), "plain", 3, unique_key="p").id == job.id
    assert sorted(drain(any_queue)) == sorted([first.id, job.id])


def test_enqueue_many_puts_unique_jobs_once_and_keeps_the_order(any_queue: Backend) -> None:
    producer = Producer(any_queue, registry=registry)
    jobs = producer.enqueue_many(
        [("plain", [1], {}), ("report", [5], {}), ("plain", [2], {}), ("report", [5], {})]
    )
    assert jobs[1].id == jobs[3].id
    assert drain(any_queue) == [jobs[0].id, jobs[1].id, jobs[2].id]
