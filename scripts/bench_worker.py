"""Benchmark the real worker on Redis: drain rate and enqueue -> start latency; prints figures.

Everything runs on loopback against a redis-server this script starts on a free port (the
tests' ``RedisServer``), through the real ``Supervisor`` and its spawned worker processes
(``--pool processes --concurrency 2``), with leases, fencing and status bookkeeping on.
Figures are also given as ratios to bare redis-py loops measured in the same run, which
cancels out most of the machine's speed. Nothing is asserted.

* **drain**: N no-op jobs are staged in a side list, then renamed into the queue in one step
  while both workers wait idle; the clock runs until every job is acknowledged. Bare: two
  processes ``LPOP key 100`` in a loop.
* **latency**: a job that returns ``time.time()`` when it starts, against its ``enqueued_at``
  (set by ``Producer`` before encoding and ``put``), with idle workers, jobs ~3-5 ms apart.
  Bare: ``RPUSH`` -> another process blocked in ``BLPOP``.
* **enqueue** through ``Producer`` (with the registry check) and **memory** per queued job.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_worker.py [--prefetch N] [--jobs 20000] [--memory-jobs 1000000]
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing as mp
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import Supervisor, SupervisorSettings
from producer import Producer
from scripts.bench_jobs_redis import registry
from scripts.bench_redis import PAYLOAD, make_items, rate
from services.backends.redis import keys
from services.backends.redis.queue import RedisQueue
from services.codec import decode_value, encode_job
from services.job import Job, new_job_id
from services.settings import QueueSettings, WorkerSettings
from services.stats import Field
from tests.redis_fixtures import benchmark_server

JOBS = "scripts.bench_jobs_redis:registry"
SETTINGS = QueueSettings()
ROWS: list[tuple[str, str, str, str]] = []
"""(figure, target, measured, bare redis-py / ratio) for the markdown table."""


def start_supervisor(
    url: str, queue: str | Sequence[str], prefetch: int
) -> tuple[RedisQueue, Supervisor]:
    """``conveyor worker --pool processes --concurrency 2`` in-process, children idle, serving
    ``queue`` (or several, in priority order)."""
    backend = RedisQueue(url, SETTINGS)
    settings = SupervisorSettings(
        jobs=JOBS,
        shape=shape_pool(PoolKind.PROCESSES, 2),
        worker=WorkerSettings(
            queues=(queue,) if isinstance(queue, str) else tuple(queue), prefetch=prefetch
        ),
        log_level=logging.WARNING,
    )
    supervisor = Supervisor(backend, settings)
    supervisor.start()
    spawned = [s.get(Field.HEARTBEAT) for s in supervisor.stats]
    deadline = time.monotonic() + 60
    # A child's loop overwrites the heartbeat the supervisor set at spawn: it is running.
    while any(s.get(Field.HEARTBEAT) == t for s, t in zip(supervisor.stats, spawned, strict=True)):
        if time.monotonic() > deadline:
            sys.exit("worker processes did not start")
        supervisor.run_once(0.01)
    supervisor.run_once(0.3)  # let both reach their blocking wait
    return backend, supervisor


def stop_supervisor(backend: RedisQueue, supervisor: Supervisor) -> None:
    supervisor.stop()
    while supervisor.exit_code is None:
        supervisor.run_once(0.1)
    backend.close()


def done(supervisor: Supervisor) -> int:
    return int(sum(s.get(Field.DONE) for s in supervisor.stats))


def move_markers(raw: redis.Redis, source: str, target: str) -> None:
    """Move the waiting markers of ``source``'s staged jobs to ``target`` (before the timing):
    FETCH on ``target`` then deletes real markers, as it does in production."""
    pattern = f"{keys.tag(source)}w:*"
    with raw.pipeline(transaction=False) as pipe:
        for name in raw.scan_iter(match=pattern, count=1000):
            pipe.rename(name, keys.tag(target).encode() + name[len(keys.tag(source)) :])
        pipe.execute()


def release(raw: redis.Redis, source: str, target: str) -> None:
    """Rename ``source``'s list to ``target``'s and ring its bell: the staged jobs, at once."""
    with raw.pipeline(transaction=True) as pipe:
        pipe.rename(keys.of(source).waiting, keys.of(target).waiting)
        pipe.rpush(keys.of(target).bell, "1")
        pipe.execute()


def drain_round(url: str, backend: RedisQueue, supervisor: Supervisor, n: int) -> float:
    """Stage ``n`` jobs, release them into the queue at once, time until all are acked."""
    raw = redis.Redis.from_url(url)
    jobs = [Job(name="noop", queue="drain") for _ in range(n)]
    items = [(job.id, encode_job(job)) for job in jobs]
    for i in range(0, n, 1000):
        backend.put_many("staging", items[i : i + 1000])
    before = done(supervisor)
    move_markers(raw, "staging", "drain")
    began = time.perf_counter()
    release(raw, "staging", "drain")
    while True:
        supervisor.run_once(0.002)
        if done(supervisor) - before >= n and raw.hlen(keys.of("drain").running) == 0:
            break
    elapsed = time.perf_counter() - began
    raw.close()
    return n / elapsed


def _bare_drainer(url: str, start: Any, out: Any) -> None:
    raw = redis.Redis.from_url(url)
    start.wait()
    count = 0
    while items := raw.lpop("bare", 100):
        count += len(items)
    out.put((count, time.perf_counter()))


def bare_drain(url: str, n: int) -> float:
    """Two processes ``LPOP bare 100`` until empty: the floor of any Redis list drain."""
    raw = redis.Redis.from_url(url)
    body = encode_job(Job(name="noop"))
    for i in range(0, n, 1000):
        raw.rpush("bare", *[body] * min(1000, n - i))
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_bare_drainer, args=(url, start, out)) for _ in range(2)]
    for child in children:
        child.start()
    time.sleep(1.5)
    began = time.perf_counter()
    start.set()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(10)
    raw.close()
    return float(sum(c for c, _ in results) / (max(t for _, t in results) - began))


def bench_drain(url: str, n: int, prefetch: int) -> None:
    backend, supervisor = start_supervisor(url, "drain", prefetch)
    try:
        rates = [drain_round(url, backend, supervisor, n) for _ in range(3)]
    finally:
        stop_supervisor(backend, supervisor)
    bare = bare_drain(url, n)
    mine = statistics.median(rates)
    print(
        f"drain {n:,} no-op jobs (2 processes, prefetch {prefetch}): {mine:10,.0f} jobs/s "
        f"(rounds {', '.join(f'{r:,.0f}' for r in rates)})  bare LPOP x100 {bare:10,.0f}/s  "
        f"ratio {mine / bare:.3f}"
    )
    ROWS.append(
        (f"drain, 2 processes, `--prefetch {prefetch}`", ">= 10,000 jobs/s", f"{mine:,.0f}/s",
         f"LPOP x100: {bare:,.0f}/s ({mine / bare:.2f})")
    )  # fmt: skip


def _bare_waiter(url: str, n: int, ready: Any, out: Any) -> None:
    raw = redis.Redis.from_url(url)
    ready.set()
    samples = []
    for _ in range(n):
        _key, body = raw.blpop(["bare_lat"], timeout=10)  # type: ignore[misc]
        samples.append(time.time() - float(body))
    out.put(samples)


def bare_latency(url: str, n: int) -> list[float]:
    """``RPUSH`` -> ``BLPOP`` returned in another process: the floor of a Redis wake-up."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_bare_waiter, args=(url, n, ready, out))
    child.start()
    ready.wait(30)
    time.sleep(0.3)
    raw = redis.Redis.from_url(url)
    for _ in range(n):
        raw.rpush("bare_lat", repr(time.time()))
        time.sleep(random.uniform(0.003, 0.005))
    samples: list[float] = out.get(timeout=30)
    child.join(10)
    raw.close()
    return samples


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    pick = ordered.__getitem__
    return pick(len(ordered) // 2), pick(int(len(ordered) * 0.99)), ordered[-1]


def bench_latency(url: str, n: int, prefetch: int) -> None:
    backend, supervisor = start_supervisor(url, "lat", prefetch)
    producer = Producer(RedisQueue(url, SETTINGS), registry=registry, name="lat")
    jobs = []
    try:
        for _ in range(n):
            jobs.append(producer.enqueue("started"))
            time.sleep(random.uniform(0.003, 0.005))  # idle gap: the worker waits again
        deadline = time.monotonic() + 30
        while done(supervisor) < n and time.monotonic() < deadline:
            supervisor.run_once(0.01)
        samples = []
        for job in jobs:
            status = producer.status(job.id)
            if status is not None and status.result is not None:
                samples.append(decode_value(status.result) - job.enqueued_at)
    finally:
        stop_supervisor(backend, supervisor)
    bare = percentiles(bare_latency(url, n))
    p50, p99, worst = percentiles(samples)
    print(
        f"latency enqueue->start ({len(samples)} samples, idle workers): p50 {p50 * 1e3:.3f} ms"
        f"  p99 {p99 * 1e3:.3f} ms  max {worst * 1e3:.3f} ms | bare RPUSH->BLPOP p50 "
        f"{bare[0] * 1e3:.3f} ms  p99 {bare[1] * 1e3:.3f} ms"
    )
    ROWS.append(("enqueue -> start, p50", "< 0.5 ms", f"{p50 * 1e3:.2f} ms",
                 f"RPUSH->BLPOP: {bare[0] * 1e3:.2f} ms"))  # fmt: skip
    ROWS.append(("enqueue -> start, p99", "< 1 ms", f"{p99 * 1e3:.2f} ms",
                 f"RPUSH->BLPOP: {bare[1] * 1e3:.2f} ms"))  # fmt: skip


def bench_enqueue(url: str, n_batch: int, n_single: int) -> None:
    """``Producer.enqueue_many`` (1000 per call) and ``enqueue``, each against bare RPUSH."""
    producer = Producer(RedisQueue(url, SETTINGS), registry=registry, name="enq")
    raw = redis.Redis.from_url(url)
    body = encode_job(Job(name="sink", args=(PAYLOAD,)))
    calls: list[tuple[str, tuple[str], dict[str, Any]]] = [("sink", (PAYLOAD,), {})] * 1000

    def many() -> None:
        for _ in range(n_batch // 1000):
            producer.enqueue_many(calls)

    def rpush_many() -> None:
        for _ in range(n_batch // 1000):
            raw.rpush("bare", *[body] * 1000)

    def singles() -> None:
        for _ in range(n_single):
            producer.enqueue("sink", PAYLOAD)

    def rpush_singles() -> None:
        for _ in range(n_single):
            raw.rpush("bare1", body)

    for label, n, ours, bare, target in (
        ("enqueue_many x1000", n_batch, many, rpush_many, ">= 50,000 jobs/s"),
        ("enqueue (single)", n_single, singles, rpush_singles, ">= 6,500 jobs/s"),
    ):
        mine, theirs = compare(label, n, ours, bare)
        ROWS.append((f"`Producer.{label}`", target, f"{mine:,.0f}/s",
                     f"RPUSH: {theirs:,.0f}/s ({mine / theirs:.2f})"))  # fmt: skip
    raw.delete("bare", "bare1", keys.of("enq").waiting)
    raw.close()


def compare(label: str, n: int, ours: Any, bare: Any) -> tuple[float, float]:
    """Medians of three alternating rounds each, so a noisy neighbour hits both alike."""
    rounds = [(rate(n, ours), rate(n, bare)) for _ in range(3)]
    mine = statistics.median(r[0] for r in rounds)
    theirs = statistics.median(r[1] for r in rounds)
    print(
        f"{label:20}: {mine:10,.0f} jobs/s  bare RPUSH {theirs:10,.0f}/s  ratio {mine / theirs:.2f}"
    )
    return mine, theirs


def bench_memory(url: str, n: int) -> None:
    """INFO used_memory per queued job (100-byte payload), against a bare list of the bodies."""
    raw = redis.Redis.from_url(url)
    items = make_items(1000)
    body_len = statistics.mean(len(body) for _, body in items)
    per_job = {}
    for name in ("conveyor", "bare list"):
        raw.flushall()
        queue = RedisQueue(url, SETTINGS)  # a new one: the old one would report the flush
        queue.check_server()  # the marker key, as in a real deployment
        fill: Callable[[], object]
        if name == "conveyor":
            # Fresh ids each round: put-if-absent would store a repeated id only once.
            def fill(queue: RedisQueue = queue) -> None:
                queue.put_many("mem", [(new_job_id(), body) for _, body in items])
        else:
            fill = functools.partial(raw.rpush, "mem", *[b for _, b in items])
        before = int(raw.info("memory")["used_memory"])
        for _ in range(n // 1000):
            fill()
        per_job[name] = (int(raw.info("memory")["used_memory"]) - before) / (n // 1000 * 1000)
        queue.close()
    mine, bare = per_job["conveyor"], per_job["bare list"]
    print(
        f"memory: {mine:.1f} bytes/job for {n:,} jobs (body {body_len:.0f} bytes); "
        f"bare list {bare:.1f}"
    )
    ROWS.append((f"Redis memory per queued job ({n:,}, body {body_len:.0f} B)", "<= 250 B",
                 f"{mine:.0f} B", f"bare list: {bare:.0f} B"))  # fmt: skip
    raw.flushall()
    raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefetch", type=int, default=1, help="worker --prefetch")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain round")
    parser.add_argument("--samples", type=int, default=1000, help="latency samples")
    parser.add_argument("--memory-jobs", type=int, default=1_000_000, help="0 skips memory")
    parser.add_argument("--only", choices=["drain", "latency", "enqueue", "memory"])
    parser.add_argument("--redis-server", default=None, help="redis-server binary to use")
    args = parser.parse_args()
    # Snapshots on (as a deployment would have), so workers do not warn about persistence.
    with benchmark_server(args.redis_server, ["--save", "3600 1"]) as server:
        print(f"{mp.cpu_count()} CPUs")
        run = {args.only} if args.only else {"drain", "latency", "enqueue", "memory"}
        if "drain" in run:
            bench_drain(server.url, args.jobs, args.prefetch)
        if "latency" in run:
            bench_latency(server.url, args.samples, args.prefetch)
        if "enqueue" in run:
            bench_enqueue(server.url, 200_000, 20_000)
        if "memory" in run and args.memory_jobs:
            bench_memory(server.url, args.memory_jobs)
    print(f"\n.venv/bin/python scripts/bench_worker.py --prefetch {args.prefetch}\n")
    print("| figure | target | measured | bare redis-py (ratio) |\n|---|---|---|---|")
    for row in ROWS:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
