"""Benchmark Conveyor on a 3-master Redis Cluster against one redis-server, in one run.

Prints, nothing asserted (ratios to the single server are from the same run):

* **drain**: N no-op jobs through the real ``Supervisor`` (``--pool processes --concurrency
  2``, prefetch 1, as ``scripts/bench_worker.py``) on (i) one redis-server, (ii) the cluster
  with one queue, (iii) the cluster with three queues on three different masters, the same
  two processes serving all three. Jobs are staged under a *twin* queue name whose hash tag
  falls in the same slot as the real queue's, so one ``RENAME`` in that slot releases them all
  at once while the workers wait idle (a rename across slots is refused on a cluster); the
  clock runs until every job is acknowledged.
* **enqueue**: ``Producer.enqueue_many`` in batches of 1000 (round-robin over the queues).
* **failover** on the cluster, without and with ``--durable``: ``tests.failover_run`` (real
  ``conveyor worker`` processes, a producer, the busy queue's master SIGKILLed mid-run). With
  one replica per master a durable write needs the killed node back (the run restarts it);
  the last run adds a second replica to the busy queue's master (a *witness* that never fails
  over itself), so durable writes go on as soon as the other replica is promoted.

The machine's load average is printed with each figure: on 2 shared cores the cluster's six
servers, the workers and this script compete for the same CPUs.

Usage (from the repo root)::

    .venv/bin/python scripts/bench_cluster.py [--jobs 20000] [--no-failover]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.crc import key_slot

from consumer.supervisor import Supervisor
from producer import Producer
from scripts.bench_jobs_redis import registry
from scripts.bench_redis import PAYLOAD, rate
from scripts.bench_worker import done, start_supervisor, stop_supervisor
from services.backends.redis import keys
from services.backends.redis.connection import Client, disconnect, make_client
from services.backends.redis.queue import RedisQueue
from services.codec import encode_job
from services.job import Job
from services.settings import QueueSettings
from tests.failover_run import FailoverPlan, failover_workers, run_failover
from tests.redis_fixtures import RedisServer, benchmark_server
from tests.redis_topology_fixtures import (
    ClusterOfSix,
    _cluster_port,
    ask,
    info_field,
    running,
    wait_until,
)
from tests.topology_workload import queues_on_masters

JOBS = "scripts.bench_jobs_redis:registry"
TABLE: dict[str, dict[str, str]] = {}
"""figure -> setup -> measured, for the table at the end."""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


@functools.cache
def twin(queue: str) -> str:
    """A queue name whose keys share ``queue``'s slot: stage there, RENAME into ``queue``."""
    slot = key_slot(keys.of(queue).waiting.encode())
    for n in range(1_000_000):
        name = f"stage{n}"
        if key_slot(keys.of(name).waiting.encode()) == slot:
            return name
    raise RuntimeError(f"no staging name shares slot {slot}")


RENAME_PAIRS = "for i = 1, #KEYS, 2 do redis.call('RENAME', KEYS[i], KEYS[i + 1]) end"
RELEASE = "redis.call('RENAME', KEYS[1], KEYS[2]) redis.call('RPUSH', KEYS[3], '1')"
"""Scripts, not pipelines: redis-py refuses RENAME in cluster pipelines (keys of one slot)."""


def move_markers(client: Client, queue: str) -> None:
    """Move the waiting markers of the jobs staged for ``queue`` to ``queue`` (untimed):
    FETCH on ``queue`` then deletes real markers, as it does in production."""
    source, target = keys.tag(twin(queue)), keys.tag(queue).encode()
    found = list(client.scan_iter(match=f"{source}w:*", count=1000))
    pairs = [name for key in found for name in (key, target + key[len(source) :])]
    if pairs:
        client.eval(RENAME_PAIRS, len(pairs), *pairs)


def release(client: Client, queue: str) -> None:
    """Rename the staged list to ``queue``'s and ring its bell: the staged jobs, at once."""
    client.eval(RELEASE, 3, keys.of(twin(queue)).waiting, keys.of(queue).waiting,
                keys.of(queue).bell)  # fmt: skip


def stage(backend: RedisQueue, queue: str, n: int) -> None:
    jobs = [Job(name="noop", queue=queue) for _ in range(n)]
    items = [(job.id, encode_job(job)) for job in jobs]
    for i in range(0, n, 1000):
        backend.put_many(twin(queue), items[i : i + 1000])


def drain_round(
    client: Client, backend: RedisQueue, supervisor: Supervisor, queues: Sequence[str], n: int
) -> float:
    """Stage ``n`` jobs over ``queues``, release them at once, time until all are acked."""
    per = n // len(queues)
    for queue in queues:
        stage(backend, queue, per)
        move_markers(client, queue)
    before = done(supervisor)
    began = time.perf_counter()
    for queue in queues:
        release(client, queue)
    while True:
        supervisor.run_once(0.002)
        if done(supervisor) - before >= per * len(queues) and not any(
            client.hlen(keys.of(queue).running) for queue in queues
        ):
            break
    return per * len(queues) / (time.perf_counter() - began)


def bench_drain(label: str, url: str, queues: Sequence[str], n: int) -> float:
    backend, supervisor = start_supervisor(url, queues, prefetch=1)
    client = make_client(url, timeout_s=10.0)
    try:
        rates = [drain_round(client, backend, supervisor, queues, n) for _ in range(3)]
    finally:
        stop_supervisor(backend, supervisor)
        disconnect(client)
    mine = statistics.median(rates)
    print(
        f"drain {n:,} no-op jobs, {label}: {mine:8,.0f} jobs/s "
        f"(rounds {', '.join(f'{r:,.0f}' for r in rates)}; {load()})"
    )
    return mine


def bench_enqueue(label: str, url: str, queues: Sequence[str], n: int) -> float:
    """``Producer.enqueue_many`` of 1000 jobs a call, round-robin over ``queues``."""
    backends = [RedisQueue(url, QueueSettings()) for _ in queues]
    producers = [
        Producer(b, registry=registry, name=q) for b, q in zip(backends, queues, strict=True)
    ]
    calls: list[tuple[str, tuple[str], dict[str, Any]]] = [("sink", (PAYLOAD,), {})] * 1000

    def many() -> None:
        for i in range(n // 1000):
            producers[i % len(producers)].enqueue_many(calls)

    rates = [rate(n, many) for _ in range(3)]
    for backend in backends:
        backend.close()
    mine = statistics.median(rates)
    print(f"enqueue_many x1000, {label}: {mine:8,.0f} jobs/s ({load()})")
    return mine


def record(figure: str, setup: str, value: float, base: float | None) -> None:
    ratio = f" ({value / base:.2f})" if base else ""
    TABLE.setdefault(figure, {})[setup] = f"{value:,.0f}/s{ratio}"


def redis_cpu_s(url: str) -> float:
    """Seconds of CPU the server at ``url`` has used (its main thread does the queue's work)."""
    client = make_client(url, timeout_s=10.0)
    try:
        info = client.info("cpu")
    finally:
        disconnect(client)
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bench_single(n: int) -> tuple[float, float]:
    with benchmark_server(None) as server:
        cpu_before = redis_cpu_s(server.url)
        drained = bench_drain("one redis-server, 1 queue", server.url, ["drain"], n)
        per_job_us = (redis_cpu_s(server.url) - cpu_before) / (3 * n) * 1e6
        # The model for k shards: a shard is one Redis main thread; it can carry about 1 s of
        # CPU a second, so 1e6 / (its CPU per job) jobs/s, if enough consumers feed it.
        print(
            f"Redis CPU per job (put + fetch + ack, no-op job): {per_job_us:.1f} us, so one "
            f"shard tops out near {1e6 / per_job_us:,.0f} jobs/s; k shards on k machines near "
            f"k x that, given consumers enough and jobs spread over >= k queues ({load()})"
        )
        enqueued = bench_enqueue("one redis-server, 1 queue", server.url, ["enq"], 100_000)
    record("drain (2 processes)", "single", drained, None)
    record("enqueue_many x1000", "single", enqueued, None)
    return drained, enqueued


def bench_on_cluster(cluster: ClusterOfSix, n: int, base: tuple[float, float]) -> None:
    queues = queues_on_masters(cluster, 3)
    for setup, names in (("cluster, 1 queue", queues[:1]), ("cluster, 3 queues", queues)):
        drained = bench_drain(f"{setup} {names}", cluster.url, names, n)
        record("drain (2 processes)", setup, drained, base[0])
        cluster.flush()
        enqueued = bench_enqueue(f"{setup} {names}", cluster.url, names, 100_000)
        record("enqueue_many x1000", setup, enqueued, base[1])
        cluster.flush()


def add_witness(cluster: ClusterOfSix, master: int, data_dir: Path) -> RedisServer:
    """A second replica of ``master`` that never fails over itself: once the other replica is
    promoted, the witness follows it, so --durable writes have a replica to wait for."""
    port = _cluster_port()
    node = RedisServer(cluster.binary, data_dir / f"witness-{port}", port)
    node.data_dir.mkdir(parents=True)
    node.start(
        extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "1000", "--cluster-replica-no-failover", "yes",
        ]
    )  # fmt: skip
    [master_id] = [fields[0] for fields in cluster.view(master) if "myself" in fields[2]]
    ask(port, "CLUSTER", "MEET", "127.0.0.1", str(master))
    replicate = functools.partial(ask, port, "CLUSTER", "REPLICATE", master_id)
    wait_until("the witness replicates the master", lambda: replicate() is not None)
    synced = functools.partial(info_field, port, "replication", "master_link_status")
    wait_until("the witness is in sync", lambda: synced() == "up")
    return node


def failover(cluster: ClusterOfSix, *, durable: bool, witness: bool = False) -> None:
    """One measured failover run; ``witness``: a second replica instead of a restart."""
    cluster.heal()
    cluster.flush()
    queues = queues_on_masters(cluster, 3)
    busy = keys.of(queues[1]).waiting
    label = "cluster, 2 replicas" if witness else "cluster"
    plan = FailoverPlan(
        label=label,
        url=cluster.url,
        queues=[queues[1], queues[0], queues[2]],
        master_port=functools.partial(cluster.master_of, busy),
        kill=functools.partial(cluster.kill_master_of, busy),
        promoted=functools.partial(cluster.wait_promoted, busy),
        restore=cluster.heal if durable and not witness else None,
        durable=durable,
    )
    with tempfile.TemporaryDirectory() as scratch:
        extra = add_witness(cluster, plan.master_port(), Path(scratch)) if witness else None
        try:
            measure(plan, Path(scratch))
        finally:
            if extra is not None:
                extra.kill()


def measure(plan: FailoverPlan, scratch: Path) -> None:
    with failover_workers(scratch) as workers:
        run = run_failover(plan, workers, scratch / "ledger")
    print(f"{run.figures.line()} ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain round")
    parser.add_argument("--no-failover", action="store_true", help="skip the failover runs")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {load()}")
    logging.basicConfig(level=logging.WARNING)  # INFO lines would drown the figures
    base = bench_single(args.jobs)
    with running(ClusterOfSix) as cluster:
        bench_on_cluster(cluster, args.jobs, base)
        if not args.no_failover:
            failover(cluster, durable=False)
            failover(cluster, durable=True)
            # Last: the witness stays in the cluster (heal() expects six nodes).
            failover(cluster, durable=True, witness=True)
    print(f"\n.venv/bin/python scripts/bench_cluster.py --jobs {args.jobs} ({load()})\n")
    setups = ["single", "cluster, 1 queue", "cluster, 3 queues"]
    print(f"| figure | {' | '.join(setups)} |\n|---|---|---|---|")
    for figure, row in TABLE.items():
        print(f"| {figure} | {' | '.join(row.get(s, '-') for s in setups)} |")


if __name__ == "__main__":
    main()
