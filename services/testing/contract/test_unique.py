"""Unique jobs (``JobPutter.put_unique``): one live job per key and queue.

While the job holding a key is queued, delayed, running or waiting for a retry, a put with the
key stores nothing and answers the holder's id; once it finished (done, dead, cancelled) the
next put with the key stores a new job; a TTL (``unique_for``) frees the key early.
"""

from __future__ import annotations

from services.protocol import Completion
from services.testing.contract.helpers import job, poll, run_all
from services.testing.contract.subject import BackendUnderTest


def test_a_second_put_with_the_key_stores_nothing_and_names_the_holder(
    backend: BackendUnderTest,
) -> None:
    # Given a job put with a unique key
    first_id, first_body = job(1)
    assert backend.root.put_unique("default", first_id, first_body, key="k", ttl_s=None) == first_id

    # When another job is put with the same key, from a connection opened as a child's
    second_id, second_body = job(2)
    child = backend.consumer("p1")
    holder = child.put_unique("default", second_id, second_body, key="k", ttl_s=None)

    # Then nothing was stored and the answer is the first job's id
    assert holder == first_id
    assert backend.root.counts("default").waiting == 1
    assert backend.root.status(second_id) is None


def test_keys_are_per_key_and_per_queue(backend: BackendUnderTest) -> None:
    put = backend.root.put_unique
    a, b, c = job(1), job(2), job(3, queue="other")
    assert put("default", *a, key="k1", ttl_s=None) == a[0]
    assert put("default", *b, key="k2", ttl_s=None) == b[0]
    assert put("other", *c, key="k1", ttl_s=None) == c[0]
    assert backend.root.counts("default").waiting == 2
    assert backend.root.counts("other").waiting == 1


def test_the_key_is_held_while_delayed_running_and_retrying(backend: BackendUnderTest) -> None:
    # Given a delayed job holding a key
    holder_id, body = job(1)
    backend.root.put_unique("default", holder_id, body, key="k", ttl_s=None, delay_s=0.3)
    assert backend.root.put_unique("default", *job(2), key="k", ttl_s=None) == holder_id

    # When it runs, and fails once (waiting for its retry)
    consumer = backend.consumer("c1")
    [delivery] = poll(lambda: consumer.get(["default"], timeout_s=0.2), timeout_s=10)
    assert delivery.job_id == holder_id
    assert backend.root.put_unique("default", *job(3), key="k", ttl_s=None) == holder_id
    assert consumer.retry(delivery, delivery.body, delay_s=0.2, error="boom")

    # Then it holds the key all along
    assert backend.root.put_unique("default", *job(4), key="k", ttl_s=None) == holder_id
    assert backend.root.counts("default").waiting + backend.root.counts("default").delayed == 1


def test_a_finished_job_frees_its_key(backend: BackendUnderTest) -> None:
    # Given a unique job that ran to the end
    first_id, body = job(1)
    backend.root.put_unique("default", first_id, body, key="k", ttl_s=None)
    consumer = backend.consumer("c1")
    assert run_all(consumer) == [first_id]

    # When the same key is put again
    second_id, second_body = job(2)
    holder = backend.root.put_unique("default", second_id, second_body, key="k", ttl_s=None)

    # Then the new job is stored and holds the key
    assert holder == second_id
    assert run_all(consumer) == [second_id]


def test_a_dead_or_cancelled_job_frees_its_key(backend: BackendUnderTest) -> None:
    consumer = backend.consumer("c1")
    dead_id, body = job(1)
    backend.root.put_unique("default", dead_id, body, key="dead", ttl_s=None)
    [delivery] = consumer.get(["default"], timeout_s=2)
    assert consumer.dead_letter(delivery, "gave up")
    again = job(2)
    assert backend.root.put_unique("default", *again, key="dead", ttl_s=None) == again[0]

    cancelled_id, body = job(3)
    backend.root.put_unique("default", cancelled_id, body, key="gone", ttl_s=None, delay_s=60)
    assert backend.root.cancel(cancelled_id).cancelled
    later = job(4)
    assert backend.root.put_unique("default", *later, key="gone", ttl_s=None) == later[0]


def test_a_ttl_frees_the_key_while_the_holder_lives(backend: BackendUnderTest) -> None:
    # Given a job holding a key for 0.5 s, still queued
    first_id, body = job(1)
    backend.root.put_unique("default", first_id, body, key="k", ttl_s=0.5)
    assert backend.root.put_unique("default", *job(2), key="k", ttl_s=0.5) == first_id

    # When the TTL has passed / Then a put with the key stores a second job
    third_id, third_body = job(3)
    found = poll(
        lambda: (
            backend.root.put_unique("default", third_id, third_body, key="k", ttl_s=0.5) == third_id
        ),
        timeout_s=10,
    )
    assert found
    assert backend.root.counts("default").waiting == 2


def test_a_repeated_unique_put_of_the_same_id_stores_once(backend: BackendUnderTest) -> None:
    # A put whose reply was lost is sent again with the same id and key
    job_id, body = job(1)
    assert backend.root.put_unique("default", job_id, body, key="k", ttl_s=None) == job_id
    assert backend.root.put_unique("default", job_id, body, key="k", ttl_s=None) == job_id
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=2)
    consumer.ack([Completion(delivery)])
    # Even after it finished: the id is present (result TTL), nothing is stored again
    assert backend.root.put_unique("default", job_id, body, key="k", ttl_s=None) == job_id
    assert consumer.get(["default"], timeout_s=0.2) == []


def test_unique_and_plain_puts_of_one_queue_live_side_by_side(backend: BackendUnderTest) -> None:
    plain = job(1)
    backend.root.put("default", *plain)
    unique = job(2)
    assert backend.root.put_unique("default", *unique, key="k", ttl_s=None) == unique[0]
    assert sorted(run_all(backend.consumer("c1"))) == sorted([plain[0], unique[0]])
