"""Worker start-up, command to first job, as the comparison harness measures it; prints figures.

The harness (``benchmarks.measure``, drain workload) starts ``conveyor worker`` with
``benchmarks.peers.conveyor_peer``'s command line and takes the time from ``Popen`` to the
first job it sees. This script runs that same command, against a throwaway redis-server
(``conveyor bench``'s ``throwaway_server``), with one job queued beforehand: the peer's ``lat``
job, given ``0.0`` as its enqueue time, pushes ``time.time()`` at its start to
``bench:latencies``. Start-up is that time less ``time.time()`` just before ``Popen``: no
polling interval in the figure. The worker is then stopped (SIGTERM, as the harness does) and
the server flushed for the next round.

``--tree PATH`` measures a second checkout (e.g. a git worktree of the code before a change)
in the same run, rounds alternating between the two, and prints the ratios of the medians and of
the minimums (on a busy machine the minimum is the figure least disturbed by other processes).

Usage (from the repo root)::

    .venv/bin/python scripts/bench_startup.py [--rounds 7] [--tree /tmp/old-startup]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from consumer.cli.bench_server import throwaway_server

HERE = Path(__file__).resolve().parent.parent
LATENCIES = "bench:latencies"  # benchmarks.work.LATENCIES
TIMEOUT_S = 60.0


def worker_command(url: str, extra: list[str]) -> list[str]:
    """``benchmarks.peers.conveyor_peer``'s drain command (asyncio pool, 2 processes)."""
    return [
        *[sys.executable, "-m", "consumer", "--log-level", "warning", "worker", "--url", url],
        *["--queue", "bench", "--jobs", "benchmarks.peers.conveyor_peer:registry"],
        *["--pool", "asyncio", "--processes", "2", "--concurrency", "50", *extra],
    ]


def enqueue_probe(url: str, tree: Path) -> None:
    """Queue one ``lat`` job through ``tree``'s own ``Producer`` (its format, its keys)."""
    code = (
        "import sys; from producer import Producer; from services.backends import open_queue; "
        "Producer(open_queue(sys.argv[1]), name='bench').enqueue('lat', 0.0)"
    )
    subprocess.run([sys.executable, "-c", code, url], cwd=tree, check=True, env=_env(url, tree))


def _env(url: str, tree: Path) -> dict[str, str]:
    # The tree's own packages first (the venv's editable install points at this checkout).
    return {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(tree)}


def one_round(url: str, tree: Path, extra: list[str]) -> float:
    """Seconds from the worker command's start to its first job's start."""
    client = redis.Redis.from_url(url)
    client.flushall()
    enqueue_probe(url, tree)
    began = time.time()
    worker = subprocess.Popen(
        worker_command(url, extra),
        cwd=tree,
        env=_env(url, tree),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        popped = client.blpop([LATENCIES], timeout=TIMEOUT_S)
        if popped is None:
            raise TimeoutError(f"no job started within {TIMEOUT_S} s ({tree})")
        return float(popped[1]) - began
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        client.close()


def summary(label: str, figures: list[float]) -> str:
    ms = [f * 1000 for f in figures]
    return (
        f"{label:<28} median {statistics.median(ms):7.1f} ms   "
        f"min {min(ms):7.1f}   max {max(ms):7.1f}   (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tree", type=Path, help="a second checkout to compare with")
    parser.add_argument("--redis-server", default="auto")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="one more argument for `conveyor worker` (repeat), e.g. --worker-arg=--burst",
    )
    args = parser.parse_args()
    trees = [HERE] + ([args.tree.resolve()] if args.tree else [])
    results: list[list[float]] = [[] for _ in trees]  # by position: --tree may be this tree
    with throwaway_server(args.redis_server) as url:
        for _ in range(args.rounds):
            for tree, figures in zip(trees, results, strict=True):
                # alternating: the machine's noise falls on both trees alike
                figures.append(one_round(url, tree, args.worker_arg))
    print(f"command to first job: {' '.join(worker_command('URL', args.worker_arg)[1:])}")
    for tree, figures in zip(trees, results, strict=True):
        print(summary(str(tree), figures))
    if args.tree:
        new, old = (statistics.median(figures) for figures in results)
        low_new, low_old = (min(figures) for figures in results)
        print(f"ratio this/other: medians {new / old:.2f}, minimums {low_new / low_old:.2f}")


if __name__ == "__main__":
    main()
