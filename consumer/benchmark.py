"""``conveyor bench``'s measurements: each phase runs real jobs and returns measured figures.

One run, in this order (``PHASES``), on one queue of its own (``bench-<hex>``)::

    enqueue   Producer.enqueue one at a time, then enqueue_many in batches of 1,000: jobs/s;
              Redis memory per queued job and commands per enqueued job from INFO around it
    http      a ``conveyor serve`` subprocess on the same URL (``bench_http``): POSTs of one
              job, then of 100, over 4 keep-alive connections at once: jobs/s; the queue's
              depth must then count every job (Redis only: serve refuses memory://)
    drain     start the pool on that backlog (queued here first if the enqueue phase did not
              run): start-up (spawn -> first job done), drain jobs/s
              (first completion -> last, so start-up is outside), Redis commands per job;
              ``incr`` jobs: the counter must equal the job count
    io        10 ms sleeps, as many at once as the pool has slots: jobs/s and % of the ideal
    latency   jobs enqueued one by one at a steady rate, each returning when it started:
              enqueue -> start p50/p95/p99
    cpu       the same CPU-bound jobs on 1 and on 2 processes: jobs/s each, and the ratio
    pools     10 ms sleeps at -c at once in one process: a bare asyncio gather and a bare
              thread pool (``bench_baseline``), then Conveyor's asyncio and threads pools
              of one process x -c slots: jobs/s each, and each pool as % of its baseline

Every figure is measured, none derived from a target. Nothing is asserted.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from consumer.bench_baseline import bare_asyncio_rate, bare_threads_rate
from consumer.bench_http import post_all, serving
from consumer.bench_pool import BenchError, BenchPool, rate
from consumer.pool_shape import PoolKind, shape_pool
from producer import Producer
from services.backends import ServerProbe, open_probe, open_queue, scheme_of
from services.codec import decode_value
from services.protocol import Backend
from services.settings import QueueSettings

IO_SLEEP_S = 0.01
CPU_ROUNDS = 1_000_000
"""About 50-100 ms of pure Python on a 2-core machine of 2026."""
BATCH = 1000
HTTP_BATCH = 100
HTTP_CLIENTS = 4
"""Keep-alive connections POSTing at once: one client alone would measure its own round trips."""
HTTP_ON_MEMORY = (
    "skipped: conveyor serve refuses memory:// (its queue would live in the server process, "
    "out of the workers' reach); give --redis-server auto or --url redis://..."
)


class JobKind(StrEnum):
    """What each drained job does (``--job``)."""

    NOOP = "noop"
    INCR = "incr"
    SLEEP = "sleep"
    CPU = "cpu"


@dataclass(frozen=True)
class BenchSettings:
    """What ``conveyor bench`` measures, from its flags."""

    url: str
    pool: PoolKind
    concurrency: int
    processes: int | None
    job: JobKind
    jobs: int
    rate: float = 200.0
    """Offered load of the latency phase, jobs/s."""
    latency_jobs: int = 500
    prefetch: int = 1
    timeout_s: float = 300.0
    """The longest any phase may take."""
    serve_args: tuple[str, ...] = ()
    """Extra arguments for the http phase's ``conveyor serve``."""


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``name`` (stable, for ``--json``), ``value`` in ``unit``."""

    name: str
    value: float
    unit: str
    detail: str = ""


Phase = Callable[["Bench"], list[Figure]]


class Bench:
    """One benchmark run's state: the backend, the probe, the queue name, the pool."""

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.queue_name = f"bench-{secrets.token_hex(4)}"
        self.backend: Backend = open_queue(settings.url, QueueSettings())
        self.probe: ServerProbe | None = open_probe(settings.url)
        self.producer = Producer(self.backend, name=self.queue_name)
        self.pool: BenchPool | None = None
        self.counter_key = f"{self.queue_name}:incr"

    def call(self) -> tuple[str, tuple[object, ...], dict[str, Any]]:
        """The call of one job of the chosen kind."""
        kind, url = self.settings.job, self.settings.url
        if kind is JobKind.INCR:
            return ("incr", (url, self.counter_key), {})
        if kind is JobKind.SLEEP:
            return (self.sleep_job(), (IO_SLEEP_S,), {})
        if kind is JobKind.CPU:
            return ("crunch", (CPU_ROUNDS,), {})
        return ("noop", (), {})

    def sleep_job(self) -> str:
        return "async_nap" if self.settings.pool is PoolKind.ASYNCIO else "nap"

    def new_pool(self, kind: PoolKind, concurrency: int, processes: int | None) -> BenchPool:
        shape = shape_pool(kind, concurrency, processes=processes)
        prefetch = max(self.settings.prefetch, shape.slots)
        return BenchPool(self.backend, shape, queue=self.queue_name, prefetch=prefetch)

    def next_queue(self) -> None:
        """A fresh backend connection and queue for a phase that starts a pool of its own (a
        memory:// queue serves the children of one supervisor only)."""
        self.backend.close()
        self.backend = open_queue(self.settings.url, QueueSettings())
        self.queue_name = f"bench-{secrets.token_hex(4)}"
        self.producer = Producer(self.backend, name=self.queue_name)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.probe is not None:
            self.probe.delete(self.counter_key)
            self.probe.close()
        self.backend.close()


def enqueue_phase(bench: Bench) -> list[Figure]:
    """Single and batched enqueue; memory and commands per queued job when a server answers."""
    total = bench.settings.jobs
    singles, batched = max(1, total // 5), total - max(1, total // 5)
    name, args, kwargs = bench.call()
    memory_before, commands_before = _server_figures(bench.probe)
    began = time.perf_counter()
    for _ in range(singles):
        bench.producer.enqueue(name, *args, **kwargs)
    single_s = time.perf_counter() - began
    commands_mid = _server_figures(bench.probe)[1]
    began = time.perf_counter()
    for start in range(0, batched, BATCH):
        bench.producer.enqueue_many([(name, args, kwargs)] * min(BATCH, batched - start))
    batch_s = time.perf_counter() - began
    figures = [
        Figure("enqueue_single", singles / single_s, "jobs/s", f"{singles:,} jobs, one by one"),
        Figure("enqueue_batch", batched / batch_s, "jobs/s", f"{batched:,} jobs, {BATCH:,} a call"),
    ]
    if bench.probe is not None:
        memory = _server_figures(bench.probe)[0] - memory_before
        figures += [
            Figure("memory_per_job", memory / total, "bytes", "used_memory, queued"),
            Figure("commands_per_enqueue", (commands_mid - commands_before) / singles, "commands"),
        ]
    return figures


def http_phase(bench: Bench) -> list[Figure]:
    """Enqueue through ``conveyor serve``: one job a POST, then ``HTTP_BATCH`` a POST."""
    settings = bench.settings
    if scheme_of(settings.url) == "memory":
        raise BenchError(f"the http phase was {HTTP_ON_MEMORY}")
    singles = max(1, settings.jobs // 5)
    batched = max(1, (settings.jobs - singles) // HTTP_BATCH) * HTTP_BATCH
    clients = min(HTTP_CLIENTS, singles)
    queue = f"{bench.queue_name}-http"  # no pool serves it: its depth counts what was POSTed
    one, many = _http_bodies(bench)
    path = f"/v1/queues/{queue}"
    with serving(settings.url, extra_args=settings.serve_args) as port:
        # One request per client first, outside the clock: the server's first requests connect
        # it to Redis and warm its code paths.
        post_all(port, f"{path}/jobs", one, requests=clients, clients=clients)
        single_s = post_all(port, f"{path}/jobs", one, requests=singles, clients=clients)
        posts = batched // HTTP_BATCH
        batch_s = post_all(port, f"{path}/batches", many, requests=posts, clients=clients)
    _check_depth(bench, queue, clients + singles + batched)
    detail = "{:,} jobs, {} a POST, {} keep-alive clients"
    return [
        Figure(
            "http_enqueue_single", singles / single_s, "jobs/s", detail.format(singles, 1, clients)
        ),
        Figure(
            "http_enqueue_batch",
            batched / batch_s,
            "jobs/s",
            detail.format(batched, HTTP_BATCH, min(clients, posts)),
        ),
    ]


def _http_bodies(bench: Bench) -> tuple[bytes, bytes]:
    """The JSON bodies of a single POST and of a batch POST of ``HTTP_BATCH`` jobs."""
    name, args, kwargs = bench.call()
    job = {"job": name, "args": list(args), "kwargs": kwargs}
    return json.dumps(job).encode(), json.dumps({"jobs": [job] * HTTP_BATCH}).encode()


def _check_depth(bench: Bench, queue: str, expected: int) -> None:
    """Every accepted POST put its jobs on the queue: a route that answers 202 and stores
    nothing cannot report a rate."""
    if (found := bench.backend.depth(queue)) != expected:
        raise BenchError(f"queue {queue} holds {found} jobs after {expected} were POSTed")


def drain_phase(bench: Bench) -> list[Figure]:
    """Start the pool on the backlog: start-up to the first job done, then the drain rate."""
    settings = bench.settings
    waiting = bench.backend.depth(bench.queue_name)
    if waiting < settings.jobs:  # run without the enqueue phase (--only drain): fill it now
        name, args, kwargs = bench.call()
        for start in range(waiting, settings.jobs, BATCH):
            count = min(BATCH, settings.jobs - start)
            bench.producer.enqueue_many([(name, args, kwargs)] * count)
    _, commands_before = _server_figures(bench.probe)
    bench.pool = pool = bench.new_pool(settings.pool, settings.concurrency, settings.processes)
    began = pool.start()
    clock = pool.wait_for(settings.jobs, base=0, timeout_s=settings.timeout_s)
    figures = [
        Figure("startup", clock.first_at - began, "s", "pool spawn -> first job done"),
        Figure("drain", rate(clock, settings.jobs), "jobs/s", f"{settings.jobs:,} {settings.job}"),
    ]
    if bench.probe is not None:
        commands = _server_figures(bench.probe)[1] - commands_before
        figures.append(Figure("commands_per_job", commands / settings.jobs, "commands", "drain"))
    if settings.job is JobKind.INCR and bench.probe is not None:
        _check_counter(bench.probe, bench.counter_key, settings.jobs)
    return figures


def _check_counter(probe: ServerProbe, key: str, jobs: int) -> None:
    """Every ``incr`` job ran: the counter reads at least the job count (at-least-once)."""
    if (counted := probe.read_int(key)) < jobs:
        raise BenchError(f"the counter reads {counted}, not {jobs}: jobs were lost")


def io_phase(bench: Bench) -> list[Figure]:
    """10 ms sleeps, several per slot: jobs/s against the ideal of slots / 10 ms."""
    pool = _pool(bench)
    slots = bench.settings.concurrency * (bench.settings.processes or 1)
    if bench.settings.pool is PoolKind.PROCESSES:
        slots = bench.settings.concurrency
    count = max(4 * slots, bench.settings.jobs)
    base = pool.done()
    bench.producer.enqueue_many([(bench.sleep_job(), (IO_SLEEP_S,), {})] * count)
    measured = rate(pool.wait_for(count, base=base, timeout_s=bench.settings.timeout_s), count)
    ideal = slots / IO_SLEEP_S
    return [Figure("io", measured, "jobs/s", f"{measured / ideal:.0%} of {ideal:,.0f} ideal")]


def latency_phase(bench: Bench) -> list[Figure]:
    """Enqueue jobs one by one at a steady rate; each returns when it started: percentiles of
    started - enqueued_at (both ``time.time()``, on one machine)."""
    pool, settings = _pool(bench), bench.settings
    count, gap = max(1, settings.latency_jobs), 1.0 / settings.rate
    base, jobs = pool.done(), []
    due = time.perf_counter()
    for _ in range(count):
        jobs.append(bench.producer.enqueue("started"))
        due += gap
        while (left := due - time.perf_counter()) > 0:
            pool.turn(min(left, 0.01))
    pool.wait_for(count, base=base, timeout_s=settings.timeout_s)
    delays = sorted(_started_at(bench, job.id) - job.enqueued_at for job in jobs)
    detail = f"{count:,} jobs at {settings.rate:,.0f}/s"
    return [
        Figure(f"latency_p{round(q * 100)}", _percentile(delays, q) * 1e3, "ms", detail)
        for q in (0.5, 0.95, 0.99)
    ]


def _started_at(bench: Bench, job_id: str) -> float:
    status = bench.producer.status(job_id)
    if status is None or status.result is None:
        raise BenchError(f"job {job_id} left no result")
    return float(decode_value(status.result))


def cpu_phase(bench: Bench) -> list[Figure]:
    """The same CPU-bound jobs on a processes pool of 1 and of 2: does it scale?"""
    if bench.pool is not None:
        bench.pool.stop()
        bench.pool = None
    rates = {}
    count = max(20, min(bench.settings.jobs // 10, 200))
    for processes in (1, 2):
        bench.next_queue()
        bench.pool = pool = bench.new_pool(PoolKind.PROCESSES, processes, None)
        pool.start()
        pool.wait_booted()
        bench.producer.enqueue_many([("crunch", (CPU_ROUNDS,), {})] * count)
        clock = pool.wait_for(count, base=0, timeout_s=bench.settings.timeout_s)
        rates[processes] = rate(clock, count)
        pool.stop()
        bench.pool = None
    return [
        Figure("cpu_x1", rates[1], "jobs/s", "processes pool, 1 process"),
        Figure("cpu_x2", rates[2], "jobs/s", "processes pool, 2 processes"),
        Figure("cpu_scaling", rates[2] / rates[1], "x", "x2 over x1"),
    ]


POOLS_WAVES = (10, 50)
"""The pools phase runs --jobs sleeps, but at least 10 and at most 50 waves of -c: enough
waves to time, few enough that the default run stays a few seconds."""


def pools_phase(bench: Bench) -> list[Figure]:
    """The same 10 ms sleeps, -c at once in one process: bare, then through each pool."""
    concurrency = bench.settings.concurrency
    fewest, most = (waves * concurrency for waves in POOLS_WAVES)
    count = max(fewest, min(bench.settings.jobs, most))
    detail = f"{count:,} x 10 ms, {concurrency} at once"
    bare = {
        PoolKind.ASYNCIO: bare_asyncio_rate(count, concurrency, IO_SLEEP_S),
        PoolKind.THREADS: bare_threads_rate(count, concurrency, IO_SLEEP_S),
    }
    figures = []
    for kind, job in ((PoolKind.ASYNCIO, "async_nap"), (PoolKind.THREADS, "nap")):
        pooled = _pool_rate(bench, kind, job, count)
        figures += [
            Figure(f"bare_{kind}", bare[kind], "jobs/s", f"{detail}, no queue"),
            Figure(f"pool_{kind}", pooled, "jobs/s", f"{detail}, 1 process"),
            Figure(f"pool_{kind}_ratio", 100 * pooled / bare[kind], "%", f"of bare_{kind}"),
        ]
    return figures


def _pool_rate(bench: Bench, kind: PoolKind, job: str, count: int) -> float:
    """Jobs/s of ``count`` ``job(IO_SLEEP_S)`` on a fresh pool of one process x -c slots."""
    if bench.pool is not None:
        bench.pool.stop()
    bench.next_queue()
    bench.pool = pool = bench.new_pool(kind, bench.settings.concurrency, 1)
    try:
        pool.start()
        pool.wait_booted()
        bench.producer.enqueue_many([(job, (IO_SLEEP_S,), {})] * count)
        return rate(pool.wait_for(count, base=0, timeout_s=bench.settings.timeout_s), count)
    finally:
        pool.stop()
        bench.pool = None


PHASES: dict[str, Phase] = {
    "enqueue": enqueue_phase,
    "http": http_phase,
    "drain": drain_phase,
    "io": io_phase,
    "latency": latency_phase,
    "cpu": cpu_phase,
    "pools": pools_phase,
}


def run_bench(settings: BenchSettings, phases: list[str]) -> Iterator[tuple[str, list[Figure]]]:
    """Each phase's name and figures, in order; the pool and connections closed at the end."""
    bench = Bench(settings)
    try:
        for name in phases:
            yield name, PHASES[name](bench)
    finally:
        bench.close()


def _pool(bench: Bench) -> BenchPool:
    if bench.pool is None:
        raise BenchError("the drain phase starts the pool; run it first")
    return bench.pool


def _server_figures(probe: ServerProbe | None) -> tuple[int, int]:
    if probe is None:
        return 0, 0
    return probe.used_memory(), probe.commands_processed()


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
