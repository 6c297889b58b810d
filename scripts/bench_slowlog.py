"""Benchmark how long the Redis backend's script calls hold Redis while a real worker drains.

Starts its own redis-server (``benchmark_server``), sets ``slowlog-log-slower-than 10000``
(10 ms), stages N no-op jobs and releases them into the queue at once while the real
``Supervisor`` (``--pool processes --concurrency 2``, as in ``bench_worker.py``) waits, then
drains them. Prints the SLOWLOG entries above 10 ms (count, longest, the commands) and the drain
rate. Nothing is asserted. Redis runs nothing else while a script runs, so every entry here is
a stall for every other client.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_slowlog.py [--jobs 1000000] [--prefetch 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from scripts.bench_worker import (
    SETTINGS,
    done,
    move_markers,
    release,
    start_supervisor,
    stop_supervisor,
)
from services.backends.redis import keys
from services.backends.redis.queue import RedisQueue
from services.codec import encode_job
from services.job import Job
from tests.redis_fixtures import benchmark_server

SLOW_US = 10_000


def stage(url: str, n: int) -> None:
    """Put ``n`` no-op jobs on a staging queue, 1000 per call."""
    queue = RedisQueue(url, SETTINGS)
    for start in range(0, n, 1000):
        jobs = [Job(name="noop", queue="drain") for _ in range(min(1000, n - start))]
        queue.put_many("staging", [(job.id, encode_job(job)) for job in jobs])
    queue.close()


def drain(url: str, n: int, prefetch: int) -> float:
    """Release the staged jobs into the queue and time the drain; returns jobs/s."""
    raw = redis.Redis.from_url(url)
    backend, supervisor = start_supervisor(url, "drain", prefetch)
    try:
        move_markers(raw, "staging", "drain")
        raw.slowlog_reset()
        began = time.perf_counter()
        release(raw, "staging", "drain")
        last = time.monotonic()
        while done(supervisor) < n or raw.hlen(keys.of("drain").running):
            supervisor.run_once(0.01)
            if time.monotonic() - last > 10:
                print(f"  ... {done(supervisor):,} done", flush=True)
                last = time.monotonic()
        elapsed = time.perf_counter() - began
    finally:
        stop_supervisor(backend, supervisor)
        raw.close()
    return n / elapsed


def report(url: str) -> None:
    raw = redis.Redis.from_url(url)
    entries = raw.slowlog_get(1024)
    raw.close()
    if not entries:
        print(f"SLOWLOG: 0 entries above {SLOW_US / 1000:.0f} ms")
        return
    longest = max(e["duration"] for e in entries)
    kinds = Counter(_kind(e["command"]) for e in entries)
    print(
        f"SLOWLOG: {len(entries)} entries above {SLOW_US / 1000:.0f} ms, longest "
        f"{longest / 1000:.1f} ms; by command: {dict(kinds.most_common(5))}"
    )


def _kind(command: bytes | str) -> str:
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    return " ".join(text.split()[:2])[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to drain")
    parser.add_argument("--prefetch", type=int, default=1, help="worker --prefetch")
    parser.add_argument("--redis-server", default=None, help="redis-server binary to use")
    args = parser.parse_args()
    with benchmark_server(args.redis_server, ["--save", "3600 1"]) as server:
        raw = redis.Redis.from_url(server.url)
        raw.config_set("slowlog-log-slower-than", SLOW_US)
        raw.config_set("slowlog-max-len", 1024)
        raw.close()
        began = time.perf_counter()
        stage(server.url, args.jobs)
        print(f"staged {args.jobs:,} jobs in {time.perf_counter() - began:.1f} s")
        rate = drain(server.url, args.jobs, args.prefetch)
        print(f"drained {args.jobs:,} no-op jobs: {rate:,.0f} jobs/s (2 processes)")
        report(server.url)
    print(f"\n.venv/bin/python scripts/bench_slowlog.py --jobs {args.jobs}")


if __name__ == "__main__":
    main()
