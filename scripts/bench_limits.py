"""Benchmark what a concurrency limit costs: jobs/s of a limited no-op job against the same job
without limits, one run each; prints figures, asserts nothing.

All run through the real ``Supervisor`` (``--pool processes --concurrency 2``, spawned
worker processes) on a redis-server this script starts on a free port. ``limited_noop``
(``limit="bench:2"``) has as many permits as the pool has slots: a worker asks for a job's
permits only when a slot is free for it (``consumer.admission``), so the limit never refuses
and the figure is what admitting costs when every job takes the last free permit.
``roomy_noop`` has more permits than any prefetch holds: the bare cost of admitting (ACQUIRE,
one round trip before the start) and releasing (RELEASE after the ack, one more). A
rate-limited job is not measured: its throughput is its rate.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_limits.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import Supervisor, SupervisorSettings
from services.backends.redis.queue import RedisQueue
from services.codec import encode_job
from services.job import Job
from services.settings import QueueSettings, WorkerSettings
from services.stats import Field
from tests.redis_fixtures import benchmark_server

JOBS = "tests.jobs_limits:registry"


def drain_rate(url: str, name: str, count: int) -> float:
    """Jobs/s of ``count`` jobs ``name`` put at once while two idle worker processes wait."""
    backend = RedisQueue(url, QueueSettings())
    settings = SupervisorSettings(
        jobs=JOBS,
        shape=shape_pool(PoolKind.PROCESSES, 2),
        worker=WorkerSettings(queues=("default",)),
        log_level=logging.WARNING,
    )
    supervisor = Supervisor(backend, settings)
    supervisor.start()
    deadline = time.monotonic() + 60
    while not all(s.get(Field.BOOTED) for s in supervisor.stats):
        if time.monotonic() > deadline:
            sys.exit("worker processes did not start")
        supervisor.run_once(0.05)
    supervisor.run_once(0.3)  # let both reach their blocking wait
    items = []
    for _ in range(count):
        job = Job(name=name, queue="default")
        items.append((job.id, encode_job(job)))
    started = time.perf_counter()
    backend.put_many("default", items, new_ids=True)
    while sum(s.get(Field.DONE) for s in supervisor.stats) < count:
        if time.perf_counter() - started > 600:
            sys.exit(f"{name}: not drained in 600 s")
        supervisor.run_once(0.01)
    elapsed = time.perf_counter() - started
    supervisor.stop()
    while supervisor.exit_code is None:
        supervisor.run_once(0.1)
    backend.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    options = parser.parse_args()
    with benchmark_server(None) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        figures = {}
        for name in ("noop", "limited_noop", "roomy_noop"):
            redis.Redis(port=server.port).flushall()
            figures[name] = drain_rate(url, name, options.jobs)
            print(f"{name:>13}: {figures[name]:8.0f} jobs/s ({options.jobs} jobs)")
        for name, what in (("limited_noop", "2 permits, 2 slots"), ("roomy_noop", "100,000")):
            print(f"{name} / noop: {figures[name] / figures['noop']:.2f} ({what})")


if __name__ == "__main__":
    main()
