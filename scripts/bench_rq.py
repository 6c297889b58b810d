"""Benchmark RQ's workers against ``conveyor worker`` on the same RQ jobs; prints figures,
asserts nothing.

Each runner drains its own fresh queue of ``--jobs`` no-op RQ jobs (``tests.rq_jobs.noop``,
enqueued with plain ``rq``, JSON serializer, one pipeline) on one redis-server this script
starts on a free port, one runner after another::

    rq worker --burst -S json                          (forks a work horse per job)
    rq worker --burst -S json -w rq.worker.SimpleWorker  (runs jobs in the worker itself)
    rq worker-pool --burst -S json -n 2                (a pool of forking workers)
    conveyor worker --url rq+redis://... --burst -c 2  (processes pool, 2 processes)

Two figures per runner: **drain** jobs/s (first job started to last job ended, read back from
the RQ job hashes every runner writes: ``started_at``, ``ended_at``), and **wall** jobs/s
(command started to command exited, start-up included). The ratio is Conveyor's drain rate
over the fastest RQ runner's.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_rq.py [--jobs 10000] [--skip-forking]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.redis_fixtures import benchmark_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def runners(url: str, queue: str) -> dict[str, list[str]]:
    """The commands to compare, each draining ``queue`` on ``url``."""
    rq = [str(BIN / "rq")]
    plain = ["--burst", "-S", "json", "-u", url, "-q"]
    return {
        "rq worker (forking)": [*rq, "worker", *plain, queue],
        "rq worker SimpleWorker": [*rq, "worker", *plain, "-w", "rq.worker.SimpleWorker", queue],
        "rq worker-pool -n 2": [*rq, "worker-pool", *plain, "-n", "2", queue],
        "conveyor worker -c 2": [
            str(BIN / "conveyor"),
            "worker",
            "--url",
            "rq+" + url,
            "--queue",
            queue,
            "--jobs",
            "tests.rq_jobs:registry",
            "--burst",
            "-c",
            "2",
            "--no-scheduler",
        ],
    }


def fill(client: redis.Redis, queue: str, count: int) -> list[str]:
    """Enqueue ``count`` no-op jobs with plain rq; their ids."""
    rq_queue = Queue(queue, connection=client, serializer=JSONSerializer)
    ids = []
    for start in range(0, count, 1000):
        datas = [
            Queue.prepare_data("tests.rq_jobs.noop", result_ttl=3600)
            for _ in range(min(1000, count - start))
        ]
        ids += [job.id for job in rq_queue.enqueue_many(datas)]
    return ids


def drain_span(client: redis.Redis, ids: list[str]) -> tuple[int, float]:
    """How many jobs finished, and seconds from the first start to the last end."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", ["status", "started_at", "ended_at"])
    rows = pipe.execute()
    done = [row for row in rows if row[0] == b"finished"]
    if not done:
        return 0, float("nan")
    starts = [_stamp(row[1]) for row in done if row[1]]
    ends = [_stamp(row[2]) for row in done if row[2]]
    return len(done), max(ends) - min(starts)


def _stamp(raw: bytes) -> float:
    return datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()


def run(url: str, name: str, count: int) -> tuple[float, float, int]:
    """Drain a fresh queue with runner ``name``: drain jobs/s, wall jobs/s, jobs finished."""
    client = redis.Redis.from_url(url)
    queue = "bench-" + os.urandom(4).hex()
    command = runners(url, queue)[name]
    ids = fill(client, queue, count)
    started = time.monotonic()
    subprocess.run(
        command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.monotonic() - started
    done, span = drain_span(client, ids)
    client.close()
    return done / span, done / wall, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--skip-forking", action="store_true", help="skip the slow forking runs")
    args = parser.parse_args()
    print(f"{args.jobs} no-op RQ jobs per runner; {os.cpu_count()} CPUs")
    with benchmark_server(None) as server:
        url = server.url
        figures: dict[str, float] = {}
        for name in runners(url, "q"):
            if args.skip_forking and "SimpleWorker" not in name and "conveyor" not in name:
                continue
            drain, wall, done = run(url, name, args.jobs)
            figures[name] = drain
            print(f"{name:26} drain {drain:8.0f} jobs/s   wall {wall:8.0f} jobs/s   ({done} done)")
    rq_best = max(rate for name, rate in figures.items() if name.startswith("rq"))
    conveyor = figures["conveyor worker -c 2"]
    print(f"conveyor / fastest rq runner (drain): {conveyor / rq_best:.1f}x")


if __name__ == "__main__":
    main()
