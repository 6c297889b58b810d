"""Put-if-absent by job id: a second put of a present id stores nothing, and the job runs once.

"Present" is every state the protocol names: queued, delayed, running (delivered), waiting for
a retry, and finished (done or dead) within the result TTL. This is what makes a put whose reply
was lost safe to send again with the same id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.protocol import Completion
from tests.contract.conftest import Backend
from tests.contract.helpers import job, run_all

Setup = Callable[[Backend, str, bytes], None]


def _queued(backend: Backend, job_id: str, body: bytes) -> None:
    assert backend.root.put("default", job_id, body) is True


def _delayed(backend: Backend, job_id: str, body: bytes) -> None:
    assert backend.root.put("default", job_id, body, delay_s=0.5) is True


def _running(backend: Backend, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    [delivery] = backend.consumer("runner").get(["default"], timeout_s=1)
    assert delivery.job_id == job_id


def _retrying(backend: Backend, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.retry(delivery, body, delay_s=0.5, error="boom")


def _done(backend: Backend, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.ack([Completion(delivery)]) == 0


def _dead(backend: Backend, job_id: str, body: bytes) -> None:
    _queued(backend, job_id, body)
    consumer = backend.consumer("runner")
    [delivery] = consumer.get(["default"], timeout_s=1)
    assert consumer.dead_letter(delivery, "unknown job")


@pytest.mark.parametrize("setup", [_queued, _delayed, _retrying], ids=lambda f: f.__name__)
def test_a_second_put_of_an_unsettled_id_stores_nothing_and_the_job_runs_once(
    backend: Backend, setup: Setup
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


def test_a_second_put_of_a_running_id_stores_nothing(backend: Backend) -> None:
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
def test_a_second_put_of_a_finished_id_stores_nothing(backend: Backend, setup: Setup) -> None:
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


def test_put_many_reports_one_flag_per_item(backend: Backend) -> None:
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


def test_a_put_retried_after_a_lost_reply_is_stored_once(backend: Backend) -> None:
    # Given a put whose reply was lost (the caller cannot tell whether it was stored)
    job_id, body = job()
    first = backend.root.put("default", job_id, body)
    # When the caller sends it again with the same id, as the protocol allows
    second = backend.root.put("default", job_id, body)
    # Then the job was stored once and runs once
    assert (first, second) == (True, False)
    assert run_all(backend.consumer("c1")) == [job_id]


def test_put_returns_true_for_new_ids(backend: Backend) -> None:
    assert backend.root.put("default", *job(1)) is True
    assert backend.root.put_many("default", [job(2), job(3)]) == [True, True]
    assert backend.root.put_many("default", []) == []
    assert backend.root.depth("default") == 3
