"""A real ``conveyor worker`` on a real ``redis-server`` pushes its workers' enqueue-to-start
latency into the backend's history: jobs that waited a known time (enqueued with a delay)
land in a latency bucket at least that long, and the dashboard's percentiles read it."""

from __future__ import annotations

import time
from pathlib import Path

from producer import Producer
from producer.http.charts import percentiles
from services.backends import open_queue
from services.protocol.history import MINUTE, KeepsHistory
from services.stats import bucket_upper_s
from tests.test_redis_system import WorkerProcess, wait_for

WAIT_S = 1.5


def test_a_worker_pushes_the_wait_of_the_jobs_it_starts(redis_url: str, tmp_path: Path) -> None:
    # Given 5 jobs that cannot start before WAIT_S after their enqueue, and a worker
    backend = open_queue(redis_url)
    assert isinstance(backend, KeepsHistory)
    store = backend.history_store()
    producer = Producer(backend, name="waited")
    for i in range(5):
        producer.enqueue_in(WAIT_S, "echo", i)
    worker = WorkerProcess(
        redis_url,
        tmp_path / "worker.log",
        ["--queue", "waited", "-c", "1"],
        jobs="tests.jobs:registry",
    )
    try:
        # When the worker has run them and its supervisor has pushed (every few seconds)
        def pushed() -> int:
            return sum(sum(h.values()) for _, h in store.latency_history(MINUTE))

        wait_for("5 jobs in the latency history", lambda: pushed() >= 5, timeout_s=25.0)
    finally:
        worker.cleanup()
    # Then every job is counted once, in a bucket whose upper bound is at least the wait
    minutes = store.latency_history(MINUTE)
    counts = {i: c for _, histogram in minutes for i, c in histogram.items()}
    assert sum(counts.values()) == 5
    assert all(bucket_upper_s(i) >= WAIT_S for i in counts)
    # And the dashboard's median for that minute is at least the wait
    now = time.time()
    p50 = [v for v in percentiles(minutes, MINUTE, now=now, points=3)["start_p50_s"] if v]
    assert p50 and min(p50) >= WAIT_S
    backend.close()
