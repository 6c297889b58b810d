"""One system, one workload, on the redis-server ``BENCH_REDIS_URL`` names; prints JSON.

``python -m benchmarks.measure PEER WORKLOAD --jobs N`` (``run.py`` starts it, in a session of
its own, under a hard time bound, on a fresh server)::

    enqueue  a few untimed jobs (connections, scripts), then N jobs one by one through the
             system's API (timed: jobs/s); then its bulk API, when it has one, on N more
             (timed) -- no worker runs
    drain    N INCR jobs queued, then its workers started: start-up (command -> first job),
             jobs/s from the first INCR seen to the last, Redis commands per job (INFO
             commandstats over enqueue and drain, less this harness's own reads)
    io       N jobs of a 10 ms sleep then INCR, queued, then drained at concurrency >= 100
    latency  workers idle and warm; jobs enqueued one by one at a steady rate, each records
             (started - enqueued) at its start: p50, p95, p99

The counter must reach the job count (every job ran); a figure that cannot be measured is
left out. Bare baselines run as the pseudo-peer ``bare`` (redis-py ``RPUSH`` in a loop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from benchmarks import work
from benchmarks.peers import PEERS, Adapter

POLL_S = 0.001
WARM_JOBS = 20


class Server:
    """The harness's own client: the counter and INFO, with its own commands counted."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.own = 0

    def counter(self) -> int:
        self.own += 1
        return int(self.client.get(work.COUNTER) or 0)

    def commands(self) -> int:
        self.own += 1
        stats: dict[str, Any] = self.client.info("commandstats")
        return sum(int(entry["calls"]) for entry in stats.values())

    def wait_counter(self, target: int, timeout_s: float) -> tuple[float, int, float]:
        """Poll until the counter reaches ``target``: (first seen moving at, its value then,
        reached at), as ``time.perf_counter()``."""
        start, first_at, first = self.counter(), 0.0, 0
        deadline = time.monotonic() + timeout_s
        while (value := self.counter()) < target:
            if value > start and not first_at:
                first_at, first = time.perf_counter(), value - start
            if time.monotonic() > deadline:
                raise TimeoutError(f"counter {value} of {target}")
            time.sleep(POLL_S)
        reached = time.perf_counter()
        return first_at or reached, first, reached


def start_workers(adapter: Adapter, workload: str, options: dict[str, Any]) -> list[Any]:
    return [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        for command in adapter.worker_commands(workload, options)
    ]


def stop_workers(workers: list[Any]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def timed(run: Callable[[], object]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def enqueue(adapter: Adapter, jobs: int, **_: Any) -> dict[str, float]:
    # Untimed first calls: every system connects, loads its scripts and registers its queue
    # here, so the timed loop measures the steady per-job cost, not one-off setup (with a few
    # hundred jobs, setup was a large part of some systems' time).
    adapter.enqueue("incr", [()] * WARM_JOBS)
    adapter.enqueue_batch("incr", WARM_JOBS)
    figures = {"enqueue_single": jobs / timed(lambda: adapter.enqueue("incr", [()] * jobs))}
    began = time.perf_counter()
    if adapter.enqueue_batch("incr", jobs):
        figures["enqueue_batch"] = jobs / (time.perf_counter() - began)
    return figures


def drain(adapter: Adapter, jobs: int, server: Server, peer: str, **_: Any) -> dict[str, float]:
    commands_before, own_before = server.commands(), server.own
    adapter.enqueue("incr", [()] * jobs)
    options = dict(PEERS[peer].options)
    began = time.perf_counter()
    workers = start_workers(adapter, "drain", options)
    try:
        first_at, first, reached = server.wait_counter(jobs, 300)
        own = server.own - own_before + 1
        commands = server.commands() - commands_before - own
    finally:
        stop_workers(workers)
    return {
        "startup_s": first_at - began,
        "drain": (jobs - first) / (reached - first_at),
        "commands_per_job": commands / jobs,
    }


def io(adapter: Adapter, jobs: int, server: Server, peer: str, **_: Any) -> dict[str, float]:
    if not adapter.enqueue_batch("nap", jobs):
        adapter.enqueue("nap", [()] * jobs)
    workers = start_workers(adapter, "io", dict(PEERS[peer].options))
    try:
        first_at, first, reached = server.wait_counter(jobs, 300)
    finally:
        stop_workers(workers)
    return {"io": (jobs - first) / (reached - first_at)}


def latency(
    adapter: Adapter, jobs: int, server: Server, peer: str, rate: float, **_: Any
) -> dict[str, float]:
    workers = start_workers(adapter, "latency", dict(PEERS[peer].options))
    try:
        adapter.enqueue("lat", [(time.time(),)] * WARM_JOBS)
        server.wait_counter(WARM_JOBS, 120)
        time.sleep(0.5)  # the workers idle again, waiting for work
        server.client.delete(work.LATENCIES)
        due = time.perf_counter()
        for _job in range(jobs):
            adapter.enqueue("lat", [(time.time(),)])
            due += 1.0 / rate
            time.sleep(max(0.0, due - time.perf_counter()))
        server.wait_counter(WARM_JOBS + jobs, 120)
        delays = sorted(float(v) for v in server.client.lrange(work.LATENCIES, 0, -1))
    finally:
        stop_workers(workers)
    return {f"latency_p{round(q * 100)}_ms": percentile(delays, q) * 1e3 for q in (0.5, 0.95, 0.99)}


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bare(jobs: int, server: Server, **_: Any) -> dict[str, float]:
    """redis-py ``RPUSH`` one at a time: the floor of any single enqueue."""
    body = b'{"name": "incr", "args": [], "kwargs": {}}' + b" " * 60
    client = server.client
    for _warm in range(WARM_JOBS):
        client.rpush("bare", body)
    return {
        "enqueue_single": jobs / timed(lambda: [client.rpush("bare", body) for _ in range(jobs)])
    }


WORKLOADS: dict[str, Callable[..., dict[str, float]]] = {
    "enqueue": enqueue,
    "drain": drain,
    "io": io,
    "latency": latency,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=[*PEERS, "bare"])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="latency: jobs/s offered")
    args = parser.parse_args()
    server = Server(os.environ["BENCH_REDIS_URL"])
    if args.peer == "bare":
        figures = bare(args.jobs, server) if args.workload == "enqueue" else {}
    else:
        adapter = PEERS[args.peer].adapter()
        run = WORKLOADS[args.workload]
        figures = run(adapter, jobs=args.jobs, server=server, peer=args.peer, rate=args.rate)
        if args.workload in ("drain", "io"):
            counted = server.counter()
            if counted < args.jobs:
                sys.exit(f"{args.peer}: the counter reads {counted} of {args.jobs}: jobs lost")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
