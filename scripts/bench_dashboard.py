"""What the dashboard costs with many queues: one refresh of the overview, one turn of the
history sampler, and the memory the history holds; prints figures, asserts nothing.

On a redis-server this script starts on a free port, with ``--queues`` queues (100 by
default) each holding a few waiting jobs and a full history (every bucket of both resolutions
filled, as after a day of sampling):

* **refresh**: ``GET /v1/dashboard`` (what the overview polls every 5 s) against a real
  ``conveyor serve`` (sampler off, so only the refresh is counted): wall time per request
  (median and slowest of ``--refreshes``) and Redis commands per refresh (``INFO stats``
  ``total_commands_processed`` before and after, less the script's own ``INFO``);
* **sampler**: one ``HistorySampler.run_once`` over every queue, in this process: time and
  Redis commands;
* **memory** (``--memory``): ``MEMORY USAGE`` of each queue's two history hashes after more
  samples than they keep (a day and more, one a minute), so the figure is the capped, steady
  size: bytes per queue, whatever the uptime; and of the fleet's two enqueue-to-start latency
  hashes (one for every queue), filled alike with ``LATENCY_SPREAD`` buckets a minute.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_dashboard.py [--queues 100] [--refreshes 20] [--memory]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from producer.http.sampling import HistorySampler
from services.backends.redis.history import history_key, latency_key
from services.backends.redis.queue import RedisQueue
from services.protocol.history import RESOLUTIONS, Snapshot
from services.settings import QueueSettings
from tests.redis_fixtures import benchmark_server
from tests.test_http_fixtures import ServeProcess

T0 = 1_800_000_000.0
LATENCY_SPREAD = 30
"""Distinct latency buckets a minute holds (30 of the 12%-wide buckets: ~30x from fastest to
slowest job, e.g. 10 ms to 300 ms), each with a 3-5 digit count: a busy fleet's minute."""


def commands(client: redis.Redis) -> int:
    """Commands the server processed so far (this INFO included)."""
    return int(client.info("stats")["total_commands_processed"])


def fill(backend: RedisQueue, queues: list[str], minutes: int) -> None:
    """Jobs in every queue, and ``minutes`` of per-minute samples of each (every bucket)."""
    for i, queue in enumerate(queues):
        backend.put_many(queue, [(f"{i:04d}{n:028d}", b'{"enqueued_at": 1}') for n in range(5)])
    store = backend.history_store()
    for minute in range(minutes):
        snap = Snapshot(
            done=1_000_000 + 600 * minute,
            dead=50 + minute // 10,
            waiting=1000 + minute % 300,
            delayed=20,
            in_flight=8,
            oldest_waiting_ms=12_345,
        )
        store.record(T0 + 60 * minute, {queue: snap for queue in queues})
        spread = {60 + b: 100 + 97 * b * (minute % 7 + 1) for b in range(LATENCY_SPREAD)}
        store.add_latency(T0 + 60 * minute, spread)


def refresh_cost(url: str, client: redis.Redis, refreshes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        service = ServeProcess(url, Path(folder) / "serve.log", ["--history-interval", "0"])
        try:
            service.wait_ready()
            service.call("GET", "/v1/dashboard")  # warm: scripts, connections, done-rate ring
            times, counts = [], []
            for _ in range(refreshes):
                before = commands(client)
                started = time.perf_counter()
                with urllib.request.urlopen(service.base + "/v1/dashboard", timeout=30) as r:
                    size = len(r.read())
                times.append(time.perf_counter() - started)
                counts.append(commands(client) - before - 1)
        finally:
            service.kill()
    print(
        f"refresh (GET /v1/dashboard): median {statistics.median(times) * 1000:.1f} ms, "
        f"slowest {max(times) * 1000:.1f} ms, {statistics.median(counts):.0f} Redis commands, "
        f"{size / 1024:.0f} KiB of JSON"
    )


def sampler_cost(backend: RedisQueue, client: redis.Redis) -> None:
    sampler = HistorySampler(backend, 10.0)
    before = commands(client)
    started = time.perf_counter()
    sampled = sampler.run_once()
    elapsed = time.perf_counter() - started
    print(
        f"sampler turn: {sampled} queues in {elapsed * 1000:.1f} ms, "
        f"{commands(client) - before - 1} Redis commands"
    )


def memory_cost(client: redis.Redis, queues: list[str]) -> None:
    for resolution in RESOLUTIONS:
        sizes = [client.memory_usage(history_key(q, resolution), samples=0) or 0 for q in queues]
        entries = client.hlen(history_key(queues[0], resolution))
        encoding = client.object("encoding", history_key(queues[0], resolution))
        print(
            f"history {resolution.name:8} ({resolution.width_s} s x {entries}, "
            f"{encoding!r}): {statistics.mean(sizes):.0f} bytes per queue"
        )
    total = sum(
        client.memory_usage(history_key(q, r), samples=0) or 0 for q in queues for r in RESOLUTIONS
    )
    print(f"history in all: {total / len(queues):.0f} bytes per queue (capped: the same every day)")
    fleet = 0
    for resolution in RESOLUTIONS:
        key = latency_key(resolution)
        size = client.memory_usage(key, samples=0) or 0
        fleet += size
        print(
            f"latency {resolution.name:8} ({resolution.width_s} s x {client.hlen(key)}, "
            f"{client.object('encoding', key)!r}): {size} bytes, fleet-wide"
        )
    print(f"latency in all: {fleet} bytes for the fleet (not per queue; capped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--memory", action="store_true", help="also measure the history's bytes")
    parser.add_argument("--redis-server", default=None, help="binary (default: from PATH)")
    args = parser.parse_args()
    queues = [f"queue-{i:03d}" for i in range(args.queues)]
    with benchmark_server(args.redis_server) as server:
        client = redis.Redis(port=server.port)
        backend = RedisQueue(server.url, QueueSettings())
        minutes = max(r.keep * r.width_s // 60 for r in RESOLUTIONS) + 60
        fill(backend, queues, minutes)
        print(f"{args.queues} queues, {minutes} minutes of samples each")
        refresh_cost(server.url, client, args.refreshes)
        sampler_cost(backend, client)
        if args.memory:
            memory_cost(client, queues)
        backend.close()


if __name__ == "__main__":
    main()
