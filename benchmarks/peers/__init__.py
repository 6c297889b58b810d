"""One module per system: its jobs (the same ``benchmarks.work`` bodies), how its worker is
started, how a job is enqueued; ``PEERS`` names every variant the harness runs.

Each adapter gives:

* ``worker_commands(workload)``: the commands that start its workers (one per process), with
  the settings its documentation recommends for the workload on a 2-core machine, logging at
  WARNING, and the library's defaults for what it keeps (results, retries);
* ``enqueue(job, args)``: put one job per item of ``args``, one call each (timed by the caller);
* ``enqueue_batch(job, count)``: its bulk API, or ``None`` when it has none.

The server is ``BENCH_REDIS_URL``; the worker modules read it when imported, as each library's
own examples build their app at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

JOB_NAMES = ("incr", "nap", "lat")
"""``benchmarks.work``'s job kinds: INCR; sleep 10 ms then INCR; record the start delay."""


class Adapter(Protocol):
    """What the harness needs from one system's module."""

    def worker_commands(self, workload: str, options: dict[str, Any]) -> list[list[str]]: ...
    def enqueue(self, job: str, args: Sequence[tuple[Any, ...]]) -> None: ...
    def enqueue_batch(self, job: str, count: int) -> bool: ...


@dataclass(frozen=True)
class Peer:
    """A system in one configuration: its name in the results, its module, its options."""

    name: str
    module: str
    options: tuple[tuple[str, Any], ...] = ()
    note: str = ""

    def adapter(self) -> Adapter:
        adapter: Adapter = importlib.import_module(f"benchmarks.peers.{self.module}")
        return adapter


PEERS = {
    peer.name: peer
    for peer in (
        Peer("conveyor", "conveyor_peer", (("pool", "asyncio"),),
             "conveyor worker --pool asyncio --processes 2 --concurrency 50 (io: 100 a process)"),
        Peer("conveyor-processes", "conveyor_peer", (("pool", "processes"),),
             "conveyor worker --pool processes --concurrency 2 --threads 50"),
        Peer("rq", "rq_peer", (("worker", "fork"),), "2 x rq worker (forks a work horse a job)"),
        Peer("rq-simple", "rq_peer", (("worker", "simple"),), "2 x rq worker -w SimpleWorker"),
        Peer("rq-pool", "rq_peer", (("worker", "pool"),), "rq worker-pool -n 2"),
        Peer("celery-prefork", "celery_peer", (("pool", "prefork"),),
             "celery worker -P prefork -c 2 (io: -c 100), prefetch multiplier 16"),
        Peer("celery-threads", "celery_peer", (("pool", "threads"),),
             "celery worker -P threads -c 50 (io: 100)"),
        Peer("dramatiq", "dramatiq_peer", (), "dramatiq -p 2 -t 50"),
        Peer("huey", "huey_peer", (), "huey_consumer -k thread -w 50 (io: 100)"),
        Peer("arq", "arq_peer", (), "2 x arq worker, max_jobs 50 each, poll_delay 10 ms"),
        Peer("saq", "saq_peer", (), "2 x saq (one worker each), concurrency 50 each"),
    )
}  # fmt: skip
"""Every system and configuration, by the name the results use."""
