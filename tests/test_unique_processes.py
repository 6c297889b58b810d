"""Unique jobs under 8 concurrent producer processes on the real redis-server.

Eight spawned processes, released together, each enqueue the same unique jobs (one per key,
three rounds in a shuffled order) through their own ``Producer``. Then: Redis holds each key
once and one job per key, every producer was answered the same id per key, and after a real
``conveyor worker --burst`` ran the queue, the ledger the job writes (a file outside the
queue) shows exactly one execution per key. Enqueueing them again then stores new jobs.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
from collections import Counter
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import redis

from producer import Producer
from services.backends.redis import keys
from services.backends.redis.queue import RedisQueue
from services.registry import Registry
from services.settings import QueueSettings

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "unique"
PRODUCERS = 8
KEYS = 40
ROUNDS = 3

registry = Registry()


@registry.job(unique=True)
def once(path: str, key: str) -> str:
    """Append ``<key>`` to the ledger at ``path`` (one short ``O_APPEND`` write: atomic)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
    return key


def produce(url: str, ledger: str, go: Event, seed: int, out: str) -> None:
    """A producer process: wait for ``go``, enqueue every key ``ROUNDS`` times; write
    ``<key> <id>`` per answer to ``out``."""
    queue = RedisQueue(url, QueueSettings())
    producer = Producer(queue, registry=registry, name=QUEUE)
    order = [f"k{n}" for n in range(KEYS)]
    lines = []
    go.wait(60)
    for round_ in range(ROUNDS):
        random.Random(seed * 100 + round_).shuffle(order)
        for key in order:
            lines.append(f"{key} {producer.enqueue('once', ledger, key).id}\n")
    queue.close()
    Path(out).write_text("".join(lines))


def test_eight_producers_store_each_unique_job_once(redis_url: str, tmp_path: Path) -> None:
    # Given 8 producer processes released at once, each enqueueing the same unique jobs
    ledger = tmp_path / "ledger"
    answers = [tmp_path / f"answers-{n}" for n in range(PRODUCERS)]
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [
        ctx.Process(target=produce, args=(redis_url, str(ledger), go, n, str(answers[n])))
        for n in range(PRODUCERS)
    ]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0] * PRODUCERS

    # Then every producer got one id per key, the same as every other producer
    ids: dict[str, set[str]] = {}
    for path in answers:
        for line in path.read_text().splitlines():
            key, job_id = line.split()
            ids.setdefault(key, set()).add(job_id)
    assert sorted(ids) == sorted(f"k{n}" for n in range(KEYS))
    assert {key: len(found) for key, found in ids.items() if len(found) != 1} == {}

    # And Redis stores each key once, and one job per key
    admin = redis.Redis.from_url(redis_url)
    unique_keys = list(admin.scan_iter(match=f"{keys.tag(QUEUE)}u:*", count=1000))
    assert len(unique_keys) == KEYS
    assert admin.llen(keys.of(QUEUE).waiting) == KEYS

    # When a real worker runs the queue to the end
    run_worker(redis_url)

    # Then the ledger shows exactly one execution per key
    runs = Counter(ledger.read_text().split())
    assert runs == Counter({f"k{n}": 1 for n in range(KEYS)})

    # And the finished jobs can be enqueued again: new ids, stored
    producer = Producer(RedisQueue(redis_url, QueueSettings()), registry=registry, name=QUEUE)
    again = producer.enqueue("once", str(ledger), "k0")
    assert again.id not in ids["k0"]
    assert admin.llen(keys.of(QUEUE).waiting) == 1
    admin.close()


def run_worker(url: str) -> None:
    """``conveyor worker --burst`` on ``QUEUE`` with this module's registry, to its end."""
    command = [
        sys.executable, "-m", "consumer", "worker", "--url", url, "--queue", QUEUE,
        "--jobs", "tests.test_unique_processes:registry", "--burst", "--concurrency", "4",
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
