"""Benchmark the pool kinds on the memory backend: CPU-bound and IO-bound jobs/s; prints figures.

Each case runs on a fresh ``memory://`` queue under a real ``Supervisor`` (spawned worker
processes, the parent serving the queue), stepped with ``run_once``::

    start every pool of a section -> wait until each child's loop turns (its heartbeat moves)
    -> warm-up batch per pool (also sizes the timed batches to last --seconds)
    -> rounds: for each pool, enqueue N jobs in one put_many, turn until stats DONE counts N

Rate = jobs completed after the first completion seen / time from that first completion to the
last one, so process start-up, imports and the enqueue itself are outside the window. Rounds
alternate between the pools and the median is reported, so a noisy neighbour hits all alike;
the CPU section also times bare ``ProcessPoolExecutor`` runs of the same job, which show how
much parallelism the machine gives at that moment. Prefetch is the concurrency
(``WorkerSettings(prefetch=concurrency)``). Nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_pools.py [--quick] [--seconds 2.5] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spawned children inherit it

from consumer.pool_shape import PoolKind, shape_pool
from consumer.supervisor import Supervisor, SupervisorSettings
from producer import Producer
from services.backends import open_queue
from services.loading import load_registry
from services.settings import QueueSettings, WorkerSettings
from services.stats import Field, total

JOBS = "scripts.bench_jobs:registry"
CPU_JOB_S = 0.02
IO_JOB_S = 0.01
POLL_S = 0.005
"""How often the parent reads the counters: the timing error is at most this, per batch."""


@dataclass(frozen=True)
class Case:
    """One measurement: a pool shape and the job each of its slots runs."""

    label: str
    kind: PoolKind
    concurrency: int
    job: str
    arg: int | float
    ideal: float
    """Jobs/s if nothing but the job itself took time."""
    processes: int = 1
    """Host processes for threads/asyncio pools; ``concurrency`` is split between them."""


@dataclass
class Pool:
    """A running supervisor for one case, and the rates its timed batches reached."""

    case: Case
    supervisor: Supervisor
    producer: Producer
    batch: int = 0
    rates: list[float] | None = None

    @property
    def rate(self) -> float:
        return statistics.median(self.rates or [float("nan")])

    @property
    def percent(self) -> float:
        return 100 * self.rate / self.case.ideal


def crunch_func() -> Callable[[int], int]:
    func: Callable[[int], int] = load_registry(JOBS).get("crunch").func
    return func


def calibrate_rounds(seconds: float) -> int:
    """How many ``crunch`` rounds take ``seconds`` here (best of five, after a warm-up)."""
    crunch, probe = crunch_func(), 200_000
    crunch(probe)
    best = min(_timed(lambda: crunch(probe)) for _ in range(5))
    return max(1, round(probe * seconds / best))


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def done(supervisor: Supervisor) -> int:
    return total(s.block for s in supervisor.stats).count(Field.DONE)


def start_pool(case: Case) -> Pool:
    """A fresh memory queue and a supervisor for ``case``, its children starting."""
    queue = open_queue("memory://", QueueSettings())
    processes = None if case.kind is PoolKind.PROCESSES else case.processes
    settings = SupervisorSettings(
        jobs=JOBS,
        shape=shape_pool(case.kind, case.concurrency // case.processes, processes=processes),
        worker=WorkerSettings(prefetch=case.concurrency // case.processes),
        log_level=logging.WARNING,
    )
    supervisor = Supervisor(queue, settings)
    supervisor.start()
    return Pool(case, supervisor, Producer(queue))


def wait_started(pool: Pool) -> None:
    """Turn the supervisor until every child's loop has beaten once (its executor is up)."""
    stats = pool.supervisor.stats
    spawned = [s.get(Field.HEARTBEAT) for s in stats]
    deadline = time.monotonic() + 60
    while any(s.get(Field.HEARTBEAT) == t for s, t in zip(stats, spawned, strict=True)):
        if pool.supervisor.exit_code is not None or time.monotonic() > deadline:
            sys.exit(f"{pool.case.label}: worker processes did not start")
        pool.supervisor.run_once(POLL_S)


def run_batch(pool: Pool, count: int) -> float:
    """Enqueue ``count`` jobs; jobs/s from the first completion seen to the last."""
    supervisor, case = pool.supervisor, pool.case
    base = done(supervisor)
    pool.producer.enqueue_many([(case.job, (case.arg,), {})] * count)
    first_at, first_done = 0.0, 0
    deadline = time.monotonic() + 600
    while (finished := done(supervisor) - base) < count:
        if supervisor.exit_code is not None or time.monotonic() > deadline:
            sys.exit(f"{case.label}: {finished} of {count} jobs done; giving up")
        if finished and not first_at:
            first_at, first_done = time.perf_counter(), finished
        supervisor.run_once(POLL_S)
    elapsed = time.perf_counter() - first_at
    return (count - first_done) / elapsed if first_at else float("nan")


def warm(pool: Pool, seconds: float) -> None:
    """Run a small batch, then size the timed batches to last about ``seconds``."""
    wait_started(pool)
    case = pool.case
    rate = run_batch(pool, max(2 * case.concurrency, round(case.ideal * min(0.3, seconds / 4))))
    pool.batch = max(4 * case.concurrency, round(rate * seconds))
    pool.rates = []


def stop_pool(pool: Pool) -> None:
    pool.supervisor.stop()
    while pool.supervisor.exit_code is None:
        pool.supervisor.run_once(0.05)


def run_section(cases: list[Case], seconds: float, rounds: int) -> list[Pool]:
    """Start every pool, warm each, then time ``rounds`` batches each, alternating."""
    pools = [start_pool(case) for case in cases]
    try:
        for pool in pools:
            warm(pool, seconds)
        for _ in range(rounds):
            for pool in pools:
                assert pool.rates is not None
                pool.rates.append(run_batch(pool, pool.batch))
    finally:
        for pool in pools:
            stop_pool(pool)
    for pool in pools:
        print(
            f"{pool.case.label:40} {pool.rate:8,.0f} jobs/s  ideal {pool.case.ideal:7,.0f}  "
            f"{pool.percent:4.0f}%  ({pool.batch:,} jobs/batch; rounds: {spread(pool.rates)})"
        )
    return pools


def spread(rates: list[float] | None) -> str:
    return " ".join(f"{r:,.0f}" for r in rates or [])


def bare_rate(work: int, processes: int, *, seconds: float, rounds: int) -> float:
    """Median jobs/s of ``crunch`` on a bare ProcessPoolExecutor: the machine's own limit."""
    count = max(4 * processes, round(processes * seconds / CPU_JOB_S))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as executor:
        list(executor.map(crunch_func(), [work] * 2 * processes))  # start and warm the children
        rates = [
            count / _timed(lambda: list(executor.map(crunch_func(), [work] * count)))
            for _ in range(rounds)
        ]
    return statistics.median(rates)


def cpu_cases(work: int) -> list[Case]:
    per_job = 1 / CPU_JOB_S
    return [
        Case("cpu: processes x1", PoolKind.PROCESSES, 1, "crunch", work, per_job),
        Case("cpu: processes x2", PoolKind.PROCESSES, 2, "crunch", work, 2 * per_job),
        Case("cpu: threads x2 (one process)", PoolKind.THREADS, 2, "crunch", work, per_job),
    ]


def io_cases(concurrencies: list[int]) -> list[Case]:
    cases = []
    for kind, job, what in (
        (PoolKind.THREADS, "nap", "time.sleep"),
        (PoolKind.ASYNCIO, "async_nap", "await asyncio.sleep"),
        (PoolKind.ASYNCIO, "nap", "time.sleep in executor"),
    ):
        for c in concurrencies:
            label = f"io: {kind.value} x{c} ({what})"
            cases.append(Case(label, kind, c, job, IO_JOB_S, c / IO_JOB_S))
    if max(concurrencies) >= 500:  # past what one core drives: the same 500 on both cores
        for kind, job, what in (
            (PoolKind.THREADS, "nap", "time.sleep"),
            (PoolKind.ASYNCIO, "async_nap", "await asyncio.sleep"),
        ):
            label = f"io: {kind.value} 2 processes x250 ({what})"
            cases.append(Case(label, kind, 500, job, IO_JOB_S, 500 / IO_JOB_S, processes=2))
    return cases


def print_ratios(cpu: list[Pool], bare: tuple[float, ...]) -> None:
    one, two, threads = (pool.rate for pool in cpu)
    print(f"\nbare ProcessPoolExecutor x1 {bare[0]:,.1f} jobs/s, x2 {bare[1]:,.1f} jobs/s")
    print(f"processes x2 / processes x1: {two / one:.2f}x  (target >= 1.8x; ", end="")
    print(f"bare x2 / x1 now: {bare[1] / bare[0]:.2f}x, what the machine gives)")
    print(f"threads x2   / processes x1: {threads / one:.2f}x  (expected ~1x: the GIL)\n")


def print_table(pools: list[Pool], command: str) -> None:
    print(f"\nMarkdown for the README, measured with `{command}`:\n")
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, `memory://` backend, ")
    print("prefetch = concurrency, median of the rounds, timed from first to last completion.\n")
    print("| jobs | pool | concurrency | jobs/s | ideal jobs/s | % of ideal |")
    print("|---|---|---:|---:|---:|---:|")
    for pool in pools:
        case = pool.case
        kind, _, what = case.label.partition(": ")
        name, _, detail = what.partition(" (")
        job = f"{kind}, {detail.rstrip(')')}" if detail else kind
        print(
            f"| {job} | {name.split(' x')[0]} | {case.concurrency} | {pool.rate:,.0f} "
            f"| {case.ideal:,.0f} | {pool.percent:.0f}% |"
        )


def main() -> None:
    """Parse arguments, run the CPU section then the IO section, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s batches, 1 round, no x500")
    parser.add_argument("--seconds", type=float, default=2.5, help="length of each timed batch")
    parser.add_argument("--rounds", type=int, default=3, help="timed batches per case")
    args = parser.parse_args()
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, args.rounds)
    work = calibrate_rounds(CPU_JOB_S)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (others' work skews it)")
    print(f"crunch({work:,}) takes {CPU_JOB_S * 1e3:.0f} ms here\n")
    bare = tuple(bare_rate(work, n, seconds=seconds, rounds=rounds) for n in (1, 2))
    cpu = run_section(cpu_cases(work), seconds, rounds)
    print_ratios(cpu, bare)
    io = run_section(io_cases([10, 100] if args.quick else [10, 100, 500]), seconds, rounds)
    print_table(cpu + io, " ".join([".venv/bin/python", "scripts/bench_pools.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
