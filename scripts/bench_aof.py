"""Measure the Redis backend's write amplification: AOF bytes per job enqueued and drained.

Redis replicates a script's *effects* (the write commands it ran), and logs the same commands
to its append-only file, so AOF bytes per job are also the bytes every replica receives. This
script starts its own redis-server (``benchmark_server``) with ``appendonly yes`` (automatic
rewrites off, so the file only grows), optionally stages a backlog of waiting jobs on another
queue (waiting markers of all queues share buckets, so a big backlog shows whether a marker
change costs more as the queue grows), then:

* **enqueue**: ``Producer.enqueue_many`` of N jobs (100-byte payload), 1000 per call;
* **drain**: one in-process consumer ``get(max_count=100)`` + ``ack`` until they are gone;

and prints ``aof_current_size`` growth per job for each, next to bare redis-py (``RPUSH`` 1000
per call, ``LPOP 100``) of the same bodies. Nothing is asserted.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_aof.py [--jobs 100000] [--backlog 0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from producer import Producer
from scripts.bench_jobs_redis import registry
from scripts.bench_redis import PAYLOAD
from services.backends.redis.queue import RedisQueue
from services.codec import encode_job
from services.job import Job, new_job_id
from services.protocol import Completion
from services.settings import QueueSettings
from tests.redis_fixtures import benchmark_server

SETTINGS = QueueSettings()
AOF_ARGS = ["--appendonly", "yes", "--appendfsync", "no", "--auto-aof-rewrite-percentage", "0"]


def aof_size(raw: redis.Redis) -> int:
    return int(raw.info("persistence")["aof_current_size"])


def per_job(raw: redis.Redis, n: int, run: Callable[[], object]) -> float:
    """AOF bytes written by ``run`` (which handles ``n`` jobs), per job."""
    before = aof_size(raw)
    run()
    return (aof_size(raw) - before) / n


def stage_backlog(url: str, n: int) -> None:
    """``n`` waiting jobs on queue ``backlog`` (their markers fill the same buckets)."""
    queue = RedisQueue(url, SETTINGS)
    body = encode_job(Job(name="sink", args=(PAYLOAD,)))
    for start in range(0, n, 1000):
        queue.put_many("backlog", [(new_job_id(), body) for _ in range(min(1000, n - start))])
    queue.close()


def enqueue(url: str, n: int) -> None:
    producer = Producer(RedisQueue(url, SETTINGS), registry=registry, name="aof")
    calls: list[tuple[str, tuple[str], dict[str, Any]]] = [("sink", (PAYLOAD,), {})] * 1000
    for start in range(0, n, 1000):
        producer.enqueue_many(calls[: min(1000, n - start)])


def drain(url: str, n: int) -> None:
    queue = RedisQueue(url, SETTINGS)
    got = 0
    while got < n:
        batch = queue.get(["aof"], max_count=100, timeout_s=1.0)
        if not batch:
            sys.exit(f"the queue ran dry after {got:,} of {n:,} jobs")
        queue.ack([Completion(d) for d in batch])
        got += len(batch)
    queue.close()


def bare(raw: redis.Redis, n: int) -> tuple[float, float]:
    body = encode_job(Job(name="sink", args=(PAYLOAD,)))

    def push() -> None:
        for start in range(0, n, 1000):
            raw.rpush("bare", *[body] * min(1000, n - start))

    def pop() -> None:
        while raw.lpop("bare", 100):
            pass

    return per_job(raw, n, push), per_job(raw, n, pop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to enqueue and drain")
    parser.add_argument("--backlog", type=int, default=0, help="waiting jobs staged first")
    parser.add_argument("--redis-server", default=None, help="redis-server binary to use")
    args = parser.parse_args()
    n = args.jobs
    with benchmark_server(args.redis_server, AOF_ARGS) as server:
        raw = redis.Redis.from_url(server.url)
        stage_backlog(server.url, args.backlog)
        body = len(encode_job(Job(name="sink", args=(PAYLOAD,))))
        put = per_job(raw, n, lambda: enqueue(server.url, n))
        take = per_job(raw, n, lambda: drain(server.url, n))
        bare_put, bare_pop = bare(raw, n)
        raw.close()
    print(
        f"AOF bytes per job ({n:,} jobs, body ~{body} bytes, backlog {args.backlog:,}): "
        f"enqueue_many {put:.0f}, drain (get + ack) {take:.0f} | bare RPUSH {bare_put:.0f}, "
        f"LPOP {bare_pop:.1f} | ratio enqueue {put / bare_put:.2f}, "
        f"total {(put + take) / (bare_put + bare_pop):.2f}"
    )
    print(f"\n.venv/bin/python scripts/bench_aof.py --jobs {n} --backlog {args.backlog}")


if __name__ == "__main__":
    main()
