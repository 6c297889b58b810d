"""Single enqueue against bare redis-py: ``Producer.enqueue`` one by one vs an ``RPUSH`` loop.

Issue 16 asks single enqueue on Redis to reach 80% of a bare redis-py ``RPUSH`` loop on the
same server. This script measures both in one run, on one redis-server (a throwaway one on a
free port, as ``conveyor bench --redis-server auto`` starts, or ``--url``), and prints jobs/s,
the client's CPU per job, and the ratio enqueue/RPUSH. Nothing is asserted.

Each loop runs in its own warm child process, driven round by round over a pipe, so the loops
alternate (the order rotates each round) and a noisy neighbour hits all of them alike; the
figures are medians over the rounds, the ratios medians of the per-round ratios. ``--tree PATH``
adds a third child importing Conveyor from another checkout (``git worktree add /tmp/old HEAD``
before a change) for a before/after ratio in the same run.

Usage: ``.venv/bin/python scripts/bench_enqueue.py [--jobs 5000] [--rounds 5] [--tree PATH]
[--url redis://...] [--redis-server auto]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent

Loop = Callable[[int], None]
"""Runs the measured call ``n`` times."""


def tree_import(module: str, name: str) -> Any:
    """``module.name`` from the tree first on ``sys.path`` (imported late on purpose: a child
    puts its tree there first, and must not have imported Conveyor from this one before)."""
    return getattr(importlib.import_module(module), name)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per loop and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--tree", type=Path, help="another checkout to compare with this one")
    parser.add_argument("--url", help="an existing Redis (default: a throwaway redis-server)")
    parser.add_argument("--redis-server", default="auto", help="the throwaway server's binary")
    parser.add_argument("--serve", choices=("rpush", "enqueue"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the child: one warm loop, run on demand -----------------------------------------------


def serve(kind: str, root: Path, url: str) -> None:
    """Read a job count per line, run the loop that many times, answer ``jobs/s cpu_us``."""
    sys.path.insert(0, str(root))  # the tree under test, ahead of this script's folder
    loop = rpush_loop(url) if kind == "rpush" else enqueue_loop(url)
    loop(20)  # first use: connect, load the script, register the queue
    for line in sys.stdin:
        jobs = int(line)
        wall, cpu = time.perf_counter(), time.process_time()
        loop(jobs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{jobs / wall} {cpu / jobs * 1e6}", flush=True)


def rpush_loop(url: str) -> Loop:
    """redis-py ``RPUSH`` of a job body as ``Producer`` encodes it: the floor of any enqueue."""
    encode_job = tree_import("services.codec", "encode_job")
    job = tree_import("services.job", "Job")
    client = redis.Redis.from_url(url)
    body = encode_job(job(name="incr", queue="bench-enqueue"))
    key = f"bench-enqueue-bare-{time.time_ns()}"

    def loop(jobs: int) -> None:
        for _ in range(jobs):
            client.rpush(key, body)

    return loop


def enqueue_loop(url: str) -> Loop:
    """``Producer.enqueue`` one job at a time, no registry (as ``conveyor bench`` does)."""
    backend = tree_import("services.backends", "open_queue")(
        url, tree_import("services.settings", "QueueSettings")()
    )
    producer = tree_import("producer", "Producer")(backend, name=f"bench-enqueue-{time.time_ns()}")

    def loop(jobs: int) -> None:
        for _ in range(jobs):
            producer.enqueue("incr")

    return loop


# -- the parent: alternate the children, print figures -------------------------------------


@dataclass
class Runner:
    """One child process running one loop from one tree, and its figures per round."""

    label: str
    process: subprocess.Popen[str]
    rates: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    def round(self, jobs: int) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{jobs}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().split()
        if len(answer) != 2:
            raise SystemExit(f"{self.label}: the child ended without an answer")
        self.rates.append(float(answer[0]))
        self.cpus.append(float(answer[1]))


@contextlib.contextmanager
def runners(url: str, tree: Path | None) -> Iterator[list[Runner]]:
    plan = [("bare RPUSH", "rpush", ROOT), ("enqueue", "enqueue", ROOT)]
    if tree is not None:
        plan.append((f"enqueue [{tree}]", "enqueue", tree.resolve()))
    started: list[Runner] = []
    try:
        for label, kind, root in plan:
            command = [sys.executable, __file__, "--serve", kind, "--root", str(root)]
            child = subprocess.Popen(
                [*command, "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            started.append(Runner(label, child))
        yield started
    finally:
        for runner in started:
            assert runner.process.stdin is not None
            runner.process.stdin.close()
            runner.process.wait(30)


def measure(url: str, args: argparse.Namespace) -> None:
    with runners(url, args.tree) as found:
        for number in range(args.rounds):
            turn = number % len(found)
            for runner in found[turn:] + found[:turn]:
                runner.round(args.jobs)
            bare = found[0].rates[-1]
            cells = [f"{r.label} {r.rates[-1]:,.0f}/s ({r.rates[-1] / bare:.2f})" for r in found]
            print(f"round {number + 1}: " + "  ".join(cells), flush=True)
        report(found)


def report(found: list[Runner]) -> None:
    bare = found[0]
    print(f"medians of {len(bare.rates)} rounds:")
    for runner in found:
        ratio = statistics.median(r / b for r, b in zip(runner.rates, bare.rates, strict=True))
        print(
            f"  {runner.label:24} {statistics.median(runner.rates):10,.0f} jobs/s  "
            f"client CPU {statistics.median(runner.cpus):6.1f} us/job  ratio to bare {ratio:.2f}"
        )
    if len(found) == 3:
        new, old = found[1], found[2]
        pairs = zip(new.rates, old.rates, strict=True)
        print(f"  this tree / other tree: {statistics.median(n / o for n, o in pairs):.2f}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.serve is not None:
        serve(args.serve, args.root, args.url)
        return
    sys.path.insert(0, str(ROOT))
    throwaway_server = tree_import("consumer.cli.bench_server", "throwaway_server")
    server = contextlib.nullcontext(args.url) if args.url else throwaway_server(args.redis_server)
    with server as url:
        print(f"Redis at {url}; {args.jobs:,} jobs a loop, {args.rounds} rounds", flush=True)
        measure(url, args)


if __name__ == "__main__":
    main()
