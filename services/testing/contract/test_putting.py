"""The producer's role (``JobPutter``): put-if-absent by job id, batches, delays, following a
job by id (``status``, ``wait_finished``).

"Present" is every state the protocol names: queued, delayed, running (delivered), waiting for
a retry, and finished (done or dead) within the result TTL, on the queue put to: ids are
promised unique per queue (``services.protocol.putting``), so no test here puts one id on two
queues. This is what makes a put whose reply was lost safe to send again with the same id.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable

import pytest

from services.codec import decode_value, encode_value
from services.protocol import Completion
from services.testing.contract.helpers import completion, job, poll, run_all
from services.testing.contract.subject import BackendUnderTest


def test_put_returns_true_for_new_ids(backend: BackendUnderTest) -> None:
    assert backend.root.put("default", *job(1)) is True
    assert backend.root.put_many("default", [job(2), job(3)]) == [True, True]
    assert backend.root.put_many("default", []) == []
    assert backend.root.depth("default") == 3


def test_put_many_keeps_fifo_order_and_get_batches(backend: BackendUnderTest) -> None:
    items = [job(n) for n in range(10)]
    backend.root.put_many("default", items)
    consumer = backend.consumer("c1")
    first = consumer.get(["default"], max_count=4, timeout_s=1)
    rest = consumer.get(["default"], max_count=100, timeout_s=1)
    assert [d.job_id for d in first + rest] == [job_id for job_id, _ in items]
    assert len(first) == 4


def test_delayed_put_becomes_visible_after_its_delay(backend: BackendUnderTest) -> None:
    job_id, body = job()
    consumer = backend.consumer("c1")
    assert consumer.get(["default"], timeout_s=0.05) == []  # connected before the clock starts
    started = time.monotonic()
    backend.root.put("default", job_id, body, delay_s=1.0)
    # A delay long enough that even a busy machine asks once before the job is due; whenever
    # the job comes, it must not come early.
    found = consumer.get(["default"], timeout_s=0.05)
    if not found:
        found = poll(lambda: consumer.get(["default"], timeout_s=0.2), timeout_s=10)
    assert time.monotonic() - started >= 0.95
    assert [d.job_id for d in found] == [job_id]


def test_any_bytes_survive_the_round_trip(backend: BackendUnderTest) -> None:
    # Backends move bytes: even a pickle or binary garbage comes back unchanged (the worker,
    # not the backend, dead-letters it)
    bodies = [pickle.dumps({"x": 1}), bytes(range(256)), b"{truncated", b""]
    backend.root.put_many("default", [(f"raw-{i}", b) for i, b in enumerate(bodies)])
    found = backend.consumer("c1").get(["default"], max_count=10, timeout_s=1)
    assert [d.body for d in found] == bodies


Setup = Callable[[BackendUnderTest, str, bytes], None]


def _queued(backend: BackendUnderTest, job_id: str, body: bytes) -> None:
    assert backend.root.put("default", job_id, body) is True


def _delayed(backend: BackendUnderTest, job_id: str, body: bytes) -> None:
    assert backend.root.put("default", job_id, body, delay_s=0.5) is True


def _retrying(backend: BackendUnderTest, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.retry(delivery, body, delay_s=0.5, error="boom")


def _done(backend: BackendUnderTest, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.ack([Completion(delivery)]) == 0


def _dead(backend: BackendUnderTest, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.dead_letter(delivery, "unknown job")


@pytest.mark.parametrize("setup", [_queued, _delayed, _retrying], ids=lambda f: f.__name__)
def test_a_second_put_of_an_unsettled_id_stores_nothing_and_the_job_runs_once(
    backend: BackendUnderTest, setup: Setup
) -> None:
    # Given a job that is queued, delayed or waiting for its retry
    job_id, body = job()
    setup(backend, job_id, body)
    # When the same id is put again, with another body and no delay
    again = backend.root.put("default", job_id, b"a second body")
    # Then nothing was stored, and the job runs once, with its own body
    assert again is False
    assert run_all(backend.consumer("c1")) == [job_id]
    assert backend.consumer("c2").get(["default"], timeout_s=0.2) == []


def test_a_second_put_of_a_running_id_stores_nothing(backend: BackendUnderTest) -> None:
    # Given a job delivered to a consumer and not settled yet
    job_id, body = job()
    _queued(backend, job_id, body)
    runner = backend.consumer("runner")
    [delivery] = runner.get(["default"], timeout_s=1)
    # When the same id is put again
    again = backend.root.put("default", job_id, body)
    # Then nothing was stored: no second copy is delivered while the first is running
    assert again is False
    assert backend.consumer("c2").get(["default"], timeout_s=0.3) == []
    assert runner.ack([Completion(delivery)]) == 0
    assert backend.consumer("c3").get(["default"], timeout_s=0.2) == []


@pytest.mark.parametrize("setup", [_done, _dead], ids=lambda f: f.__name__)
def test_a_second_put_of_a_finished_id_stores_nothing(
    backend: BackendUnderTest, setup: Setup
) -> None:
    # Given a job finished (done or dead) within the result TTL
    job_id, body = job()
    setup(backend, job_id, body)
    before = backend.root.status(job_id)
    # When the same id is put again
    again = backend.root.put("default", job_id, body)
    # Then nothing was stored: it does not run again and its record is unchanged
    assert again is False
    assert backend.consumer("c1").get(["default"], timeout_s=0.3) == []
    assert backend.root.depth("default") == 0
    assert backend.root.status(job_id) == before


def test_put_many_reports_one_flag_per_item(backend: BackendUnderTest) -> None:
    # Given one job already queued
    present_id, present_body = job(0)
    assert backend.root.put("default", present_id, present_body) is True
    fresh = [job(n) for n in (1, 2)]
    # When a batch mixes it with new ids, one of them twice
    flags = backend.root.put_many(
        "default", [(present_id, b"again"), fresh[0], fresh[1], (fresh[0][0], b"twice")]
    )
    # Then only the first copy of each new id was stored, in order
    assert flags == [False, True, True, False]
    [a, b, c] = backend.consumer("c1").get(["default"], max_count=10, timeout_s=1)
    assert [(a.job_id, a.body), (b.job_id, b.body), (c.job_id, c.body)] == [
        (present_id, present_body),
        fresh[0],
        fresh[1],
    ]


def test_a_put_retried_after_a_lost_reply_is_stored_once(backend: BackendUnderTest) -> None:
    # Given a put whose reply was lost (the caller cannot tell whether it was stored)
    job_id, body = job()
    first = backend.root.put("default", job_id, body)
    # When the caller sends it again with the same id, as the protocol allows
    second = backend.root.put("default", job_id, body)
    # Then the job was stored once and runs once
    assert (first, second) == (True, False)
    assert run_all(backend.consumer("c1")) == [job_id]


def test_results_and_status_are_readable_by_id(backend: BackendUnderTest) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    consumer = backend.consumer("c1")
    [delivery] = consumer.get(["default"], timeout_s=1)
    consumer.ack([completion(delivery, result=encode_value({"answer": 42}))])
    found = backend.root.wait_finished(job_id, timeout_s=2)
    assert found is not None
    assert found.status == "done"
    assert found.result is not None
    assert decode_value(found.result) == {"answer": 42}
    status = backend.root.status(job_id)
    assert status is not None
    assert status.status == "done"


def test_wait_finished_times_out_for_an_unfinished_job(backend: BackendUnderTest) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    started = time.monotonic()
    assert backend.root.wait_finished(job_id, timeout_s=0.3) is None
    assert time.monotonic() - started >= 0.25


def test_status_of_a_waiting_job_is_queued_and_of_a_delayed_job_scheduled(
    backend: BackendUnderTest,
) -> None:
    waiting_id, waiting_body = job(1)
    delayed_id, delayed_body = job(2)
    backend.root.put("default", waiting_id, waiting_body)
    backend.root.put("default", delayed_id, delayed_body, delay_s=60)
    waiting = backend.root.status(waiting_id)
    delayed = backend.root.status(delayed_id)
    assert waiting is not None
    assert delayed is not None
    assert (waiting.status, delayed.status) == ("queued", "scheduled")
    assert backend.root.status("never-put") is None


def test_status_of_a_delivered_job_is_running(backend: BackendUnderTest) -> None:
    job_id, body = job()
    backend.root.put("default", job_id, body)
    backend.consumer("c1").get(["default"], timeout_s=1)
    found = backend.root.status(job_id)
    assert found is not None
    assert found.status == "running"
