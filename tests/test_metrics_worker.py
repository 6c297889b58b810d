"""``conveyor worker --metrics-port``: real supervisors on the session's redis-server, scraped
over HTTP while their worker processes run, crash and restart; and ``conveyor run``'s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from producer import Producer
from services.backends.redis.queue import RedisQueue
from tests import jobs
from tests.helpers_metrics import (
    Scrape,
    assert_depth_is,
    assert_n_done,
    backwards,
    scrape,
    scrape_until,
    served_url,
)
from tests.helpers_process import ROOT
from tests.redis_fixtures import free_port
from tests.test_redis_system import WorkerProcess, inspect, launch

__all__ = ["inspect", "launch"]  # fixtures

JOBS = "tests.jobs:registry"

pytestmark = pytest.mark.redis

Launch = Callable[..., WorkerProcess]


def _finished(n: int) -> Callable[[Scrape], bool]:
    return lambda found: found.total("conveyor_jobs_finished_total") >= n


def test_a_scrape_after_n_jobs_on_four_worker_processes_says_n(
    launch: Launch, inspect: RedisQueue
) -> None:
    # Given N jobs waiting, three delayed, and a worker of four processes serving metrics
    n = 200
    producer = Producer(inspect, registry=jobs.registry)
    producer.enqueue_many([("add", [number, 1], {}) for number in range(n)])
    for _ in range(3):
        producer.enqueue_in(600, "echo", "later")
    worker = launch("-c", "4", "--metrics-port", "0", jobs=JOBS)
    url = served_url(worker.log_path)
    # When all N ran
    scrapes = scrape_until(url, _finished(n))
    worker.wait_workers(4)
    found = scrape_until(url, lambda s: s.total("conveyor_worker_processes_alive") == 4)[-1]
    # Then the scrape says N done, N started, N in each histogram, never going backwards
    assert_n_done(found, n, job="add")
    assert backwards([*scrapes, found]) == []
    # And the depth gauges are the backend's counts
    assert_depth_is(found, inspect.counts("default"))
    assert found.total("conveyor_queue_depth", state="delayed") == 3
    assert found.total("conveyor_worker_processes_desired") == 4
    # And a SIGTERM stops it cleanly, metrics server included
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0


def test_a_worker_process_killed_mid_job_neither_loses_nor_doubles_a_count(
    launch: Launch, inspect: RedisQueue
) -> None:
    # Given slow jobs on two single-slot processes, both running one
    n = 6
    producer = Producer(inspect, registry=jobs.registry)
    producer.enqueue_many([("sleep", [1.5], {}) for _ in range(n)])
    worker = launch("-c", "2", "--prefetch", "0", "--metrics-port", "0", jobs=JOBS)
    url = served_url(worker.log_path)
    scrapes = scrape_until(url, lambda s: s.total("conveyor_jobs_running") == 2)
    # When one of them is SIGKILLed mid-job
    os.kill(worker.worker_pids()[0], signal.SIGKILL)
    # Then, scraped until every job is done, no counter ever went backwards
    scrapes += scrape_until(url, _finished(n), timeout_s=60)
    found = scrape_until(url, lambda s: s.total("conveyor_worker_processes_alive") == 2)[-1]
    assert backwards([*scrapes, found]) == []
    # And each job is done once (the killed one ran again: started once more, finished once)
    assert found.total("conveyor_jobs_finished_total", job="sleep", outcome="done") == n
    assert found.total("conveyor_jobs_finished_total") == n
    assert n <= found.total("conveyor_jobs_started_total", job="sleep") <= n + 1
    assert found.total("conveyor_job_duration_seconds_count", job="sleep") == n
    assert found.total("conveyor_worker_restarts_total") == 1
    assert inspect.counts("default").done == n
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0


def test_metrics_are_served_while_the_backend_is_still_unreachable(tmp_path: Path) -> None:
    # Given a worker pointed at a port where no Redis listens
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    worker = WorkerProcess(nobody, tmp_path / "worker.log", ["--metrics-port", "0"], JOBS)
    try:
        url = served_url(worker.log_path)
        # Then its endpoint already answers while it waits, and says the backend is down
        found = scrape(url)
        assert found.total("conveyor_backend_up") == 0
        assert found.total("conveyor_worker_processes_alive") == 0
        worker.send(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
    finally:
        worker.cleanup()


def test_conveyor_run_serves_the_same_metrics_on_its_memory_queue(tmp_path: Path) -> None:
    # Given a conveyor run of slow jobs on memory:// with metrics on any free port
    log_path = tmp_path / "run.log"
    command = [sys.executable, "-m", "consumer", "run", "--jobs", JOBS,
               "--feed", "tests.feeds:slow_feed", "--feed-arg", "count=40",
               "--producers", "1", "-c", "2", "--metrics-port", "0"]  # fmt: skip
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=_clean_env()
        )
        try:
            url = served_url(log_path)
            # When it is scraped while its jobs run
            found = scrape_until(
                url,
                lambda s: (
                    s.total("conveyor_jobs_finished_total", job="sleep") >= 2
                    and s.total("conveyor_worker_processes_alive") == 2
                ),
            )[-1]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    # Then it shows the jobs of its own queue, the pool, and that queue's depth
    assert found.total("conveyor_jobs_started_total", job="sleep") >= 2
    assert found.total("conveyor_worker_processes_desired") == 2
    assert found.total("conveyor_backend_up") == 1
    states = {labels["state"] for labels in found.series("conveyor_queue_depth")}
    assert states == {"waiting", "delayed", "in_flight"}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
