"""Ledger workloads on several queues, for the fault tests on Redis Cluster and Sentinel.

The single-server system tests (``tests/test_redis_system.py``) check one queue, ``default``;
these helpers extend their ledger invariant to jobs spread over several queues, which on a
cluster live on different masters. Reused from there as they are: ``WorkerProcess`` (a real
``conveyor worker`` in its own session), the ledger (``read_runs``, ``in_flight``) and the
polling helper ``wait_for``.

A job's terminal record is read straight from its queue's key ``T j:<id>`` (pipelined, one
round trip per node), not through ``status``, which probes every registered queue per id: the
test knows each job's queue. "Exactly one terminal state" is checked on that record: a list
with one item (``ACK``/``DEAD`` replace it, never append).

``Workers`` starts and cleans up worker processes, for the tests and for the benchmark script.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import RedisClusterException

from producer import Producer
from services.backends.redis import keys
from services.backends.redis.connection import Client, disconnect, make_client
from services.backends.redis.queue import RedisQueue
from services.settings import QueueSettings
from tests import jobs_system
from tests.redis_topology_fixtures import ClusterOfSix
from tests.test_redis_system import WorkerProcess, read_runs

Seconds = Callable[[int], float]
"""How long the ``i``-th ledger job of a batch sleeps."""


def quick(i: int) -> float:
    """20 to 50 ms: short jobs, varied so the workers do not run in lockstep."""
    return 0.02 + (i % 4) * 0.01


def soak(count: int) -> int:
    """``count`` scaled by ``CONVEYOR_SOAK_JOBS`` (a multiplier; default 1, the CI size)."""
    return count * max(1, int(os.environ.get("CONVEYOR_SOAK_JOBS", "1")))


@dataclass
class Workload:
    """Ledger jobs a test enqueued on several queues: job id -> ledger key, and its queue."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)
    queue_of: dict[str, str] = field(default_factory=dict)

    def add(self, job_id: str, key: str, queue: str) -> None:
        self.keys[job_id] = key
        self.queue_of[job_id] = queue

    def on(self, queue: str) -> list[str]:
        """The ids of the jobs put on ``queue``."""
        return [job_id for job_id, name in self.queue_of.items() if name == queue]

    def keys_on(self, queue: str) -> set[str]:
        return {self.keys[job_id] for job_id in self.on(queue)}


def enqueue_ledger(
    work: Workload, backend: RedisQueue, queue: str, count: int, seconds: Seconds = quick
) -> list[str]:
    """Put ``count`` ledger jobs on ``queue`` in one batch (keys ``<queue>-<n>``); their ids."""
    producer = Producer(backend, registry=jobs_system.registry, name=queue)
    first = len(work.on(queue))
    names = [f"{queue}-{first + i:05d}" for i in range(count)]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ledger", (str(work.path), name, seconds(i)), {}) for i, name in enumerate(names)
    ]
    jobs = producer.enqueue_many(calls)
    for job, name in zip(jobs, names, strict=True):
        work.add(job.id, name, queue)
    return [job.id for job in jobs]


# -- what the queues hold ----------------------------------------------------------------------


@dataclass(frozen=True)
class Final:
    """A job's terminal records (normally exactly one) read from ``T j:<id>``."""

    records: tuple[keys.StatusRecord, ...]

    @property
    def state(self) -> str | None:
        return self.records[0].state if self.records else None


def read_finals(client: Client, jobs: Mapping[str, str]) -> dict[str, Final]:
    """Each job's terminal records (job id -> queue given), in one pipelined pass."""
    ids = list(jobs)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.lrange(keys.done_key(jobs[job_id], job_id), 0, -1)
    replies = pipe.execute()
    return {
        job_id: Final(tuple(keys.parse_status(item) for item in reply))
        for job_id, reply in zip(ids, replies, strict=True)
    }


def leftovers(client: Client, queues: Sequence[str]) -> dict[str, int]:
    """Jobs still waiting, delayed, running, or held in a consumer's in-flight hash, by key."""
    found: dict[str, int] = {}
    for queue in queues:
        names = keys.of(queue)
        pipe = client.pipeline(transaction=False)
        pipe.llen(names.waiting)
        pipe.zcard(names.delayed)
        pipe.hlen(names.running)
        for key, size in zip(
            (names.waiting, names.delayed, names.running), pipe.execute(), strict=True
        ):
            found[key] = int(size)
        for name in client.scan_iter(match=keys.inflight_key(queue, "*"), count=1000):
            found[_text(name)] = int(client.hlen(name))
    return {key: size for key, size in found.items() if size}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def poll_finals(
    url: str, work: Workload, timeout_s: float, *, quiet_ends: bool = False
) -> tuple[dict[str, Final], list[str]]:
    """Poll until every job has a terminal record, or ``timeout_s`` passes: (finals, missing).

    With ``quiet_ends`` the wait also ends once the queues hold nothing more that could run
    (nothing waiting, delayed, running): a job missing then is lost, not late. Errors of a
    topology still failing over count as "not yet".
    """
    client = make_client(url, timeout_s=5.0)
    deadline = time.monotonic() + timeout_s
    finals: dict[str, Final] = {}
    try:
        while True:
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                finals = read_finals(client, work.queue_of)
                missing = sorted(i for i, final in finals.items() if final.state is None)
                if not missing:
                    return finals, []
                if quiet_ends and not leftovers(client, sorted(set(work.queue_of.values()))):
                    # Read again: a job may have settled between the two reads.
                    finals = read_finals(client, work.queue_of)
                    return finals, sorted(i for i, f in finals.items() if f.state is None)
            if time.monotonic() > deadline:
                return finals, sorted(
                    i for i in work.keys if finals.get(i, Final(())).state is None
                )
            time.sleep(0.1)
    finally:
        disconnect(client)


def wait_finals(url: str, work: Workload, timeout_s: float) -> dict[str, Final]:
    """``poll_finals``, failing the test if a job has no terminal record by then."""
    finals, missing = poll_finals(url, work, timeout_s)
    if missing:
        shown = [f"{work.queue_of[i]}/{work.keys[i]}" for i in missing[:10]]
        pytest.fail(f"{len(missing)} of {len(work.keys)} job(s) neither done nor dead: {shown}")
    return finals


def dead_ids(backend: RedisQueue, queues: Sequence[str]) -> set[str]:
    """Ids of the jobs in the dead letters of ``queues``."""
    return {
        letter.job_id for queue in queues for letter in backend.dead_letters(queue, limit=100_000)
    }


def assert_ledger_invariant(
    work: Workload,
    finals: Mapping[str, Final],
    dead: set[str],
    *,
    may_repeat: set[str],
    lost: Sequence[str] = (),
) -> Counter[str]:
    """Each job (but the ``lost`` ones, which the caller judges) has exactly one terminal
    record; done jobs wrote their ``end`` line, dead ones are in the dead letters and were in a
    fault; only jobs in ``may_repeat`` started more than once. Returns the starts per key."""
    runs = read_runs(work.path)
    starts = Counter(run.key for run in runs)
    ended = {run.key for run in runs if run.ended is not None}
    assert set(starts) <= set(work.keys.values()), "the ledger names jobs nobody enqueued"
    for job_id, key in work.keys.items():
        if job_id in lost:
            continue
        final = finals[job_id]
        assert len(final.records) == 1, f"{key}: {len(final.records)} terminal records"
        if final.state == "done":
            assert key in ended, f"{key} is done but never wrote its end line"
        else:
            assert job_id in dead, f"{key} is {final.state} but not in the dead letters"
            assert key in may_repeat, f"{key} was dead-lettered without being in a fault"
    repeated = {key for key, count in starts.items() if count > 1}
    assert repeated <= may_repeat, (
        f"jobs ran twice without being in flight during a fault: {sorted(repeated - may_repeat)}"
    )
    return starts


def assert_nothing_left(url: str, queues: Sequence[str]) -> None:
    """No job waiting, delayed, running, or in any consumer's in-flight hash of ``queues``."""
    client = make_client(url, timeout_s=5.0)
    try:
        left = leftovers(client, queues)
    finally:
        disconnect(client)
    assert not left, f"jobs left behind: {left}"


# -- worker processes ----------------------------------------------------------------------------


class Workers:
    """``conveyor worker`` processes started on any URL, logging into ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, url: str, *args: str) -> WorkerProcess:
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(url, log_path, args)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        """Kill every process started (and its children)."""
        for worker in self.started:
            worker.cleanup()

    def tails(self, lines: int = 150) -> str:
        return "\n".join(
            f"----- worker-{i} (pid {w.pid}) log tail -----\n{w.tail(lines)}"
            for i, w in enumerate(self.started)
        )


@contextlib.contextmanager
def opened(url: str, **settings: Any) -> Iterator[RedisQueue]:
    """A ``RedisQueue`` on ``url`` with ``QueueSettings(**settings)``, closed after."""
    backend = RedisQueue(url, QueueSettings(**settings))
    try:
        yield backend
    finally:
        backend.close()


def queue_args(queues: Sequence[str]) -> list[str]:
    """``--queue`` flags for ``queues``, in their priority order."""
    return [arg for queue in queues for arg in ("--queue", queue)]


CANDIDATES = ("mail", "jobs", "billing", "video", "images", "alpha", "bravo", "charlie")


def queues_on_masters(cluster: ClusterOfSix, count: int) -> list[str]:
    """``count`` queue names whose keys live on ``count`` different masters."""
    chosen: dict[int, str] = {}
    for name in CANDIDATES:
        chosen.setdefault(cluster.master_of(keys.of(name).waiting), name)
    names = list(chosen.values())[:count]
    masters = {cluster.master_of(keys.of(name).waiting) for name in names}
    assert len(masters) == count, f"{names} are served by {masters}"
    return names
