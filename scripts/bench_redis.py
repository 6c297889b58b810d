"""Benchmark the Redis backend against bare redis-py on a private redis-server; prints figures.

Everything runs on loopback against a redis-server this script starts on a free port (the
tests' ``RedisServer``), with leases, fencing and status bookkeeping on, as in production.
Throughputs are also given as ratios to a bare redis-py RPUSH in the same run, which cancels
out most of the machine's speed. Nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_redis.py [--jobs 1000000] [--redis-server PATH]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from services.backends.redis.queue import RedisQueue
from services.codec import encode_job
from services.job import Job
from services.protocol import Completion
from services.settings import QueueSettings
from tests.redis_fixtures import benchmark_server

PAYLOAD = "x" * 100
SETTINGS = QueueSettings()


def make_items(n: int) -> list[tuple[str, bytes]]:
    """``n`` real job bodies, each carrying a 100-byte string argument."""
    jobs = [Job(name="bench", args=(PAYLOAD,)) for _ in range(n)]
    return [(job.id, encode_job(job)) for job in jobs]


def rate(n: int, run: Callable[[], object]) -> float:
    """Jobs per second for ``run``, which handles ``n`` jobs."""
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def compare(label: str, n: int, ours: Callable[[], object], bare: Callable[[], object]) -> None:
    """Median of three alternating rounds each, so a noisy neighbour hits both alike."""
    rounds = [(rate(n, ours), rate(n, bare)) for _ in range(3)]
    mine = statistics.median(r[0] for r in rounds)
    theirs = statistics.median(r[1] for r in rounds)
    print(
        f"{label:15}: {mine:10,.0f} jobs/s  bare RPUSH {theirs:10,.0f}/s  ratio {mine / theirs:.2f}"
    )


def bench_enqueue(url: str, n_batch: int, n_single: int) -> None:
    """put_many in batches of 1000 and single put, each against a bare RPUSH."""
    queue, raw = RedisQueue(url, SETTINGS), redis.Redis.from_url(url)
    queue.check_server()
    items, singles = make_items(n_batch), make_items(n_single)
    chunks = [items[i : i + 1000] for i in range(0, n_batch, 1000)]
    bodies = [[body for _, body in chunk] for chunk in chunks]

    def put_batches() -> None:
        for chunk in chunks:
            queue.put_many("bench", chunk)

    def rpush_batches() -> None:
        for chunk in bodies:
            raw.rpush("bare", *chunk)

    def put_singles() -> None:
        for job_id, body in singles:
            queue.put("bench1", job_id, body)

    def rpush_singles() -> None:
        for _, body in singles:
            raw.rpush("bare1", body)

    compare("put_many x1000", n_batch, put_batches, rpush_batches)
    compare("put (single)", n_single, put_singles, rpush_singles)
    queue.close()
    raw.flushall()
    raw.close()


def _latency_consumer(url: str, n: int, ready: Any, out: Any) -> None:
    queue = RedisQueue(url, SETTINGS, consumer_id="latency")
    samples: list[float] = []
    ready.set()
    while len(samples) < n:
        for delivery in queue.get(["lat"], timeout_s=5.0):
            samples.append(time.perf_counter() - float(delivery.body))
            queue.ack([Completion(delivery)])
    queue.close()
    out.put(samples)


def bench_latency(url: str, n: int) -> None:
    """put -> get returned, with one idle consumer (another process) blocked in get."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_latency_consumer, args=(url, n, ready, out))
    child.start()
    ready.wait(30)
    producer = RedisQueue(url, SETTINGS)
    time.sleep(0.5)  # let the consumer reach its blocking wait
    for i in range(n):
        producer.put("lat", f"lat{i}", repr(time.perf_counter()).encode())
        time.sleep(0.003)  # idle gap: the consumer acks and blocks again
    samples = sorted(out.get(timeout=60))
    child.join(30)
    producer.close()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(
        f"latency put->get ({n} samples): p50 {p50 * 1e3:.3f} ms  p99 {p99 * 1e3:.3f} ms  "
        f"mean {statistics.mean(samples) * 1e3:.3f} ms"
    )


def bench_memory(url: str, n: int) -> None:
    """used_memory per queued job, against a bare list of the same bodies."""
    raw = redis.Redis.from_url(url)
    queue = RedisQueue(url, SETTINGS)
    items = make_items(1000)
    body_len = statistics.mean(len(body) for _, body in items)
    for name, fill in (
        ("conveyor", lambda: queue.put_many("mem", items)),
        ("bare list", lambda: raw.rpush("mem", *[b for _, b in items])),
    ):
        raw.flushall()
        queue.check_server()  # the marker key, as in a real deployment
        before = int(raw.info("memory")["used_memory"])
        for _ in range(n // 1000):
            fill()
        after = int(raw.info("memory")["used_memory"])
        per_job = (after - before) / (n // 1000 * 1000)
        print(
            f"memory {name:9}: {per_job:6.1f} bytes/job for {n:,} jobs "
            f"(body {body_len:.0f} bytes, overhead {per_job - body_len:.1f})"
        )
    raw.flushall()
    queue.close()
    raw.close()


def _drainer(url: str, index: int, start: Any, out: Any) -> None:
    queue = RedisQueue(url, SETTINGS, consumer_id=f"drain{index}")
    start.wait()
    done = 0
    while batch := queue.get(["drain"], max_count=100, timeout_s=0.2):
        queue.ack([Completion(d) for d in batch])
        done += len(batch)
    out.put((done, time.perf_counter()))
    queue.close()


def bench_drain(url: str, n: int, processes: int = 2) -> None:
    """Raw backend drain rate: get(max_count=100) + one ack per batch, in ``processes``."""
    queue = RedisQueue(url, SETTINGS)
    items = make_items(n)
    for i in range(0, n, 1000):
        queue.put_many("drain", items[i : i + 1000])
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_drainer, args=(url, i, start, out)) for i in range(processes)]
    for child in children:
        child.start()
    time.sleep(2.0)  # let the children import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    results = [out.get(timeout=300) for _ in children]
    for child in children:
        child.join(30)
    total = sum(done for done, _ in results)
    # Each child stops after a 0.2 s empty wait; take that off the elapsed time.
    elapsed = max(end for _, end in results) - began - 0.2
    print(
        f"drain ({processes} processes, get x100 + ack batch): "
        f"{total / elapsed:10,.0f} jobs/s ({total:,} jobs)"
    )
    queue.close()


def main() -> None:
    """Parse arguments, start redis-server, run each benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="queued jobs for memory")
    parser.add_argument("--redis-server", default=None, help="redis-server binary to use")
    args = parser.parse_args()
    with benchmark_server(args.redis_server) as server:
        bench_enqueue(server.url, 200_000, 20_000)
        bench_latency(server.url, 2000)
        bench_drain(server.url, 200_000)
        bench_memory(server.url, args.jobs)


if __name__ == "__main__":
    main()
