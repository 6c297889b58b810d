"""Metrics: the per-job counters in shared memory, the exposition, the bounded depth read, and a
real in-process supervisor with four worker processes on ``memory://`` scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Sequence

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from consumer.pool_metrics import PoolMetrics
from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import Supervisor, SupervisorSettings
from producer import Producer
from services.backends import open_queue
from services.errors import ConfigError
from services.job import Job
from services.metrics.depth import QueueDepth, read_depth
from services.metrics.exposition import MetricsRegistry
from services.metrics.families import EnqueuedCounter, depth_families
from services.metrics.job_counters import (
    BUCKETS_S,
    UNREGISTERED,
    JobCounters,
    JobLabels,
    Outcome,
    read_rows,
)
from services.metrics.service import ServiceMetrics
from services.protocol import JobQueue, QueueCounts
from services.settings import QueueSettings, RetrySettings, WorkerSettings
from tests import jobs
from tests.helpers_metrics import (
    assert_depth_is,
    assert_n_done,
    backwards,
    parse,
    scrape,
    scrape_until,
)
from tests.helpers_supervisor import stop_supervisor, turn_until

LABELS = JobLabels(queues=("q",), jobs=("a", "b"))


# -- counters in shared memory ----------------------------------------------------------------
def test_counters_of_several_seats_add_up_per_queue_and_job() -> None:
    # Given two seats' counters
    first, second = JobCounters(LABELS), JobCounters(LABELS)
    # When each counts starts, runs and outcomes of jobs a and b
    first.started("q", Job("a", queue="q"))
    second.started("q", Job("a", queue="q"))
    first.ran("q", "a", 0.003)
    second.ran("q", "a", 7.0)
    first.finished("q", "a", Outcome.DONE)
    second.finished("q", "a", Outcome.FENCED)
    second.finished("q", "b", Outcome.DEAD, 2)
    second.timed_out("q", "b")
    rows = {(row.queue, row.job): row for row in read_rows(LABELS, [first, second])}
    # Then the rows sum both seats, by label pair
    a, b = rows[("q", "a")], rows[("q", "b")]
    assert (a.started, a.finished[Outcome.DONE], a.finished[Outcome.FENCED]) == (2, 1, 1)
    assert (b.finished[Outcome.DEAD], b.timed_out, b.started) == (2, 1, 0)
    # And the duration histogram has one observation in the first bucket, one at <= 10 s
    assert a.duration.count == 2
    assert a.duration.sum == pytest.approx(7.003)
    cumulative = dict(a.duration.cumulative())
    assert (cumulative[0.005], cumulative[5.0], cumulative[10.0], cumulative[BUCKETS_S[-1]]) == (
        1,
        1,
        2,
        2,
    )


def test_a_first_attempt_observes_its_queue_wait_and_a_retry_does_not() -> None:
    counters = JobCounters(LABELS)
    waited = Job("a", queue="q", enqueued_at=time.time() - 2.0)
    # When a first attempt that waited 2 s starts, then its retry
    counters.started("q", waited)
    counters.started("q", waited.next_attempt())
    # Then both count as starts, and only the first as a 1 < wait <= 2.5 s observation
    (row,) = [row for row in read_rows(LABELS, [counters]) if row.job == "a"]
    assert row.started == 2
    assert row.wait.count == 1
    assert dict(row.wait.cumulative())[1.0] == 0
    assert dict(row.wait.cumulative())[2.5] == 1


def test_a_job_outside_the_registry_counts_under_the_unregistered_label() -> None:
    counters = JobCounters(LABELS)
    counters.finished("q", "", Outcome.DEAD)  # a malformed message: no name at all
    counters.finished("q", "nope", Outcome.DEAD)
    dead = {row.job: row.finished[Outcome.DEAD] for row in read_rows(LABELS, [counters])}
    assert dead == {"a": 0, "b": 0, UNREGISTERED: 2}


# -- exposition -------------------------------------------------------------------------------
def test_the_exposition_parses_as_prometheus_text_and_as_openmetrics() -> None:
    # Given an enqueued counter and a seat's counters
    enqueued = EnqueuedCounter()
    enqueued.add("q", "a", 3)
    counters = JobCounters(LABELS)
    counters.ran("q", "b", 0.2)
    pool = PoolMetrics(LABELS)
    pool.counters(0).finished("q", "a", Outcome.DONE, 5)
    registry = MetricsRegistry(enqueued.families, pool.families)
    # When rendered as text, then as OpenMetrics
    body, content_type = registry.render()
    open_body, open_type = registry.render("application/openmetrics-text; version=1.0.0")
    # Then both parse, with the counts given
    assert content_type.startswith("text/plain")
    found = parse(body.decode())
    assert found.total("conveyor_jobs_enqueued_total", queue="q", job="a") == 3
    assert found.total("conveyor_jobs_finished_total", job="a", outcome="done") == 5
    assert found.total("conveyor_worker_processes_desired") == 0
    assert open_type.startswith("application/openmetrics-text")
    parsed = openmetrics_families(open_body.decode())  # type: ignore[no-untyped-call]
    names = {family.name for family in parsed}
    assert {"conveyor_jobs_enqueued", "conveyor_job_duration_seconds"} <= names


def test_a_scrape_may_carry_families_computed_for_it_alone() -> None:
    registry = MetricsRegistry()
    extra = depth_families({"q": QueueCounts(waiting=4, delayed=1)}, up=True)
    found = parse(registry.render(extra=extra)[0].decode())
    assert found.total("conveyor_queue_depth", queue="q", state="waiting") == 4
    assert found.total("conveyor_queue_depth", queue="q", state="delayed") == 1
    assert found.total("conveyor_backend_up") == 1
    assert parse(registry.render()[0].decode()).samples == {}  # not kept


def test_a_taken_port_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MetricsRegistry().server("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(ConfigError, match=r"cannot serve metrics on 127\.0\.0\.1"):
            server.start()


# -- queue depth --------------------------------------------------------------------------
def test_depth_by_state_matches_the_backends_counts() -> None:
    # Given a memory queue with three jobs waiting and one delayed
    queue = open_queue("memory://")
    producer = Producer(queue, registry=jobs.registry)
    for number in range(3):
        producer.enqueue("add", number, 1)
    producer.enqueue_in(600, "add", 0, 0)
    try:
        # When its depth is read for a scrape
        found = parse(MetricsRegistry(QueueDepth(queue, ["default"]).families).render()[0].decode())
        # Then each state is the backend's own count
        counts = queue.counts("default")
        for state in ("waiting", "delayed", "in_flight"):
            shown = found.total("conveyor_queue_depth", queue="default", state=state)
            assert shown == getattr(counts, state)
        assert (counts.waiting, counts.delayed) == (3, 1)
        assert found.total("conveyor_backend_up") == 1
    finally:
        queue.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a Redis that hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_scrape_gives_up_on_a_backend_that_does_not_answer(silent_server: int) -> None:
    # Given a depth read through a connection whose calls give up after half a second
    reader = open_queue(f"redis://127.0.0.1:{silent_server}/0", QueueSettings(op_timeout_s=0.5))
    registry = MetricsRegistry(QueueDepth(reader, ["a", "b", "c"]).families)
    try:
        with registry.server("127.0.0.1", 0) as server:
            # When Prometheus scrapes
            started = time.monotonic()
            found = scrape(server.url)
            took = time.monotonic() - started
    finally:
        reader.close()
    # Then the scrape answers after one timeout, not one per queue, and says the backend is down
    assert took < 1.5
    assert found.total("conveyor_backend_up") == 0
    assert found.series("conveyor_queue_depth") == []


class _FakeAsyncBackend:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def queues(self) -> list[str]:
        await asyncio.sleep(self.delay_s)
        return ["a", "b"]

    async def counts_many(self, queues: Sequence[str]) -> list[QueueCounts]:
        return [QueueCounts(waiting=len(name), in_flight=2) for name in queues]


def test_the_asyncio_depth_read_is_bounded_too() -> None:
    answered = asyncio.run(read_depth(_FakeAsyncBackend(0.0)))
    hung = asyncio.run(read_depth(_FakeAsyncBackend(30.0), timeout_s=0.2))
    found = parse(MetricsRegistry().render(extra=answered)[0].decode())
    assert found.total("conveyor_queue_depth", queue="b", state="in_flight") == 2
    assert found.total("conveyor_backend_up") == 1
    down = parse(MetricsRegistry().render(extra=hung)[0].decode())
    assert down.total("conveyor_backend_up") == 0
    assert down.series("conveyor_queue_depth") == []


def test_a_service_shows_what_it_enqueued_and_the_depth_of_every_queue() -> None:
    # Given an HTTP producer's metrics after it enqueued 3 + 2 jobs
    metrics = ServiceMetrics()
    metrics.enqueued.add("a", "add", 3)
    metrics.enqueued.add("b", "echo", 2)
    # When scraped, with a backend that answers, then with one that hangs
    body, content_type = asyncio.run(metrics.render(None, _FakeAsyncBackend(0.0)))
    slow = ServiceMetrics(timeout_s=0.2)
    down = parse(asyncio.run(slow.render(None, _FakeAsyncBackend(30.0)))[0].decode())
    # Then it shows the counts and the depth, or says the backend is down
    found = parse(body.decode())
    assert content_type.startswith("text/plain")
    assert found.total("conveyor_jobs_enqueued_total") == 5
    assert found.total("conveyor_jobs_enqueued_total", queue="a", job="add") == 3
    assert found.total("conveyor_queue_depth", queue="a", state="waiting") == 1
    assert down.total("conveyor_backend_up") == 0


# -- a real supervisor -------------------------------------------------------------------------
@pytest.fixture
def memory_queue() -> Iterator[JobQueue]:
    found = open_queue("memory://", QueueSettings(result_ttl_s=60))
    yield found
    found.close()


def test_a_scrape_after_n_jobs_on_four_processes_says_n(memory_queue: JobQueue) -> None:
    # Given N jobs waiting and one delayed, and a supervisor of four processes serving metrics
    n = 60
    producer = Producer(memory_queue, registry=jobs.registry)
    producer.enqueue_many([("add", [number, 1], {}) for number in range(n)])
    producer.enqueue_in(600, "add", 0, 0)
    pool = PoolMetrics(JobLabels(("default",), tuple(jobs.registry.names())))
    settings = SupervisorSettings(
        jobs="tests.jobs:registry",
        shape=shape_pool(PoolKind.PROCESSES, 4),
        worker=WorkerSettings(poll_s=0.1, retry=RetrySettings(0.01, 0.05)),
    )
    supervisor = Supervisor(memory_queue, settings, metrics=pool)
    depth = QueueDepth(memory_queue, ["default"])
    registry = MetricsRegistry(pool.families, depth.families)
    with registry.server("127.0.0.1", 0) as server:
        before = scrape(server.url)
        try:
            # When they all ran
            supervisor.start()
            turn_until(supervisor, lambda: memory_queue.counts("default").done == n)
            turn_until(supervisor, lambda: len(supervisor.pids()) == 4)
            supervisor.run_once(0.01)  # publishes the pool's numbers
            scrapes = scrape_until(
                server.url, lambda s: s.total("conveyor_jobs_finished_total") >= n
            )
            counts = memory_queue.counts("default")
            after = scrape(server.url)
        finally:
            stop_supervisor(supervisor)
    # Then the depth said N waiting before, and says what the backend counts after
    assert before.total("conveyor_queue_depth", state="waiting") == n
    assert_depth_is(after, counts)
    # And the scrape says exactly N started and done, no other outcome, N of each histogram
    assert_n_done(after, n, job="add")
    assert backwards([before, *scrapes, after]) == []
    # And four processes were desired and alive
    assert after.total("conveyor_worker_processes_desired") == 4
    assert after.total("conveyor_worker_processes_alive") == 4
    assert after.total("conveyor_worker_restarts_total") == 0
