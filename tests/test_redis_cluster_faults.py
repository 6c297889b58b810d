"""Fault tests on a real Redis Cluster: three masters, three replicas, real worker processes.

The cluster is ``tests.redis_topology_fixtures``' (six ``redis-server --cluster-enabled yes``
on loopback, healed and emptied before each test). Every test runs ``conveyor worker``
processes serving three queues whose keys live on three different masters (``spread``
checks it), puts ledger jobs (``tests.jobs_system``) on them, injects a fault, and checks the
ledger invariant of the single-server system tests on every queue: each job ends with exactly
one terminal record, done (its ``end`` line written) or dead (in its queue's dead letters),
none is lost, and only jobs in flight during a fault run twice.

The master kill (``test_a_killed_master_...``) is ``tests.failover_run``'s measured run, with
and without ``--durable``; it prints its figures (failover time, lost, duplicated) in the
test output.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from services.backends.redis import keys
from services.backends.redis.connection import disconnect, make_client
from tests.failover_run import FailoverPlan, checked_failover, shown_by
from tests.redis_topology_fixtures import ClusterOfSix
from tests.test_redis_system import (
    WorkerProcess,
    _proc_state,
    ended_at_least,
    in_flight,
    malformed_bodies,
    pid_gone,
    read_runs,
    runs_a_job,
    wait_for,
)
from tests.topology_workload import (
    Workers,
    Workload,
    assert_ledger_invariant,
    assert_nothing_left,
    dead_ids,
    enqueue_ledger,
    opened,
    queue_args,
    queues_on_masters,
    soak,
    wait_finals,
)

pytestmark = [pytest.mark.redis]


@pytest.fixture
def launch_on(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``launch_on(url, *args)``: a ``conveyor worker``; all killed, logs printed, at teardown."""
    workers = Workers(tmp_path)
    yield workers.start
    workers.close()
    print(workers.tails())  # shown by pytest only when the test failed


@pytest.fixture
def spread(redis_cluster: ClusterOfSix, redis_cluster_url: str) -> list[str]:
    """Three queues on three different masters of the (healed, empty) cluster."""
    return queues_on_masters(redis_cluster, 3)


def fenced(url: str, queue: str) -> int:
    client = make_client(url, timeout_s=5.0)
    try:
        return int(client.hget(keys.of(queue).counts, "fenced") or 0)
    finally:
        disconnect(client)


@pytest.mark.timeout(120)
def test_sigkilled_busy_children_lose_nothing_on_three_masters(
    launch_on: Callable[..., WorkerProcess], redis_cluster_url: str, spread: list[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given two workers (2 processes each) serving three queues on three masters
    url = redis_cluster_url
    work = Workload(tmp_path / "ledger")
    with opened(url) as backend:
        for queue in spread:
            enqueue_ledger(work, backend, queue, soak(70))
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", "2", *queue_args(spread))
    a, b = launch_on(url, *pool), launch_on(url, *pool)
    a.wait_workers(2, timeout_s=30)
    b.wait_workers(2, timeout_s=30)
    faults: list[tuple[set[int], float]] = []
    # When busy worker processes are SIGKILLed a few times while jobs run
    for round_ in range(3):
        victim = (a, b)[round_ % 2].wait_workers(2, timeout_s=30)[round_ % 2]
        before = len({r.key for r in read_runs(work.path) if r.ended is not None})
        wait_for(f"pid {victim} to run a job", partial(runs_a_job, work.path, victim), 20, 0.005)
        os.kill(victim, signal.SIGKILL)
        faults.append(({victim}, time.time()))
        wait_for(f"pid {victim} to die", partial(pid_gone, victim), timeout_s=5)
        wait_for("progress after a kill", partial(ended_at_least, work.path, before + 10), 20)
    # And then a whole supervisor while its children are busy
    orphans = set(a.wait_workers(2, timeout_s=30))
    a.send(signal.SIGKILL)
    faults.append((orphans, time.time()))
    assert a.wait_exit(5) == -signal.SIGKILL
    wait_for("the killed supervisor's children to exit", lambda: all(map(pid_gone, orphans)), 10)
    # Then every job of every queue ends done (or dead after three crashes), none is lost,
    # and only jobs in flight on a killed process ran twice
    finals = wait_finals(url, work, timeout_s=90)
    runs = read_runs(work.path)
    suspects = set().union(*(in_flight(runs, when, pids=pids) for pids, when in faults))
    with opened(url) as backend:
        dead = dead_ids(backend, spread)
    starts = assert_ledger_invariant(work, finals, dead, may_repeat=suspects)
    assert sum(starts.values()) >= len(work.keys)
    assert b.proc.poll() is None, "the surviving worker exited"
    assert "died: signal 9" in a.log() + b.log()
    assert_nothing_left(url, spread)


@pytest.mark.timeout(90)
def test_a_worker_paused_past_its_lease_is_fenced_on_the_queues_master(
    launch_on: Callable[..., WorkerProcess], redis_cluster_url: str, spread: list[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given worker A (1 s lease) alone, running a job of the queue on the second master
    url, queue = redis_cluster_url, spread[1]
    path = tmp_path / "ledger"
    single = ("--pool", "processes", "--concurrency", "1", "--lease", "1", *queue_args(spread))
    a = launch_on(url, *single)
    [a_child] = a.wait_workers(1, timeout_s=30)
    held = Workload(path)
    with opened(url) as backend:
        [job_id] = enqueue_ledger(held, backend, queue, 1, lambda i: 1.5)
    wait_for("A to start the job", lambda: bool(read_runs(path)), timeout_s=20, poll_s=0.005)
    # When A's whole process group is SIGSTOPped past its lease, while it holds the job
    a.send_group(signal.SIGSTOP)
    wait_for("A to stop", lambda: _proc_state(a_child) == "T", timeout_s=5, poll_s=0.005)
    fenced_before = fenced(url, queue)
    # Then worker B gets the job once A's lease there expires, and runs it to done
    b = launch_on(url, *single)
    [b_child] = b.wait_workers(1, timeout_s=30)
    wait_for(
        "B to finish the job",
        lambda: any(r.pid == b_child and r.ended for r in read_runs(path)),
        timeout_s=20,
    )
    first = wait_finals(url, held, timeout_s=10)[job_id]
    assert [(r.state, r.result) for r in first.records] == [
        ("done", f'"{queue}-00000@{b_child}"'.encode())
    ]
    # When A resumes, finishes its run and acknowledges late
    a.send_group(signal.SIGCONT)
    wait_for("A's late ack to be fenced", lambda: fenced(url, queue) > fenced_before, 15)
    # Then that ack was rejected on the queue's master: one completion recorded, B's
    assert fenced(url, queue) == fenced_before + 1
    assert wait_finals(url, held, timeout_s=1)[job_id] == first
    assert sorted((r.pid, r.ended is not None) for r in read_runs(path)) == sorted(
        [(a_child, True), (b_child, True)]
    )
    # And both workers keep working on every queue: nothing lost afterwards
    after = Workload(tmp_path / "after")
    with opened(url) as backend:
        for name in spread:
            enqueue_ledger(after, backend, name, 10)
    finals = wait_finals(url, after, timeout_s=30)
    assert_ledger_invariant(after, finals, set(), may_repeat=set())
    assert {final.state for final in finals.values()} == {"done"}
    assert a.proc.poll() is None and b.proc.poll() is None
    assert_nothing_left(url, spread)


RAW_ELEMENTS = {
    b"": "malformed element: empty, no 2-byte header",
    b"\x07": "malformed element: 1 byte, shorter than its 2-byte header",
    b"\x00\x00short": "malformed element: 7 bytes, shorter than the 18-byte header of a hex id",
    b"\x00\x09ab": "malformed element: id length 9 runs past its end (4 bytes)",
    b"\x00\x02\xff\xfe{}": "malformed element: job id is not UTF-8",
}
"""Elements whose header is broken, with the reason the FETCH script dead-letters each with."""


@pytest.mark.timeout(90)
def test_malformed_elements_on_one_master_are_dead_lettered_and_the_worker_keeps_going(
    launch_on: Callable[..., WorkerProcess], redis_cluster_url: str, spread: list[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given garbage RPUSHed straight into the list of the queue on the third master (broken
    # headers, and well-formed elements with bodies no producer of ours writes), its doorbell
    # rung, and good jobs on all three queues
    url, queue = redis_cluster_url, spread[2]
    bodies = malformed_bodies()
    client = make_client(url, timeout_s=5.0)
    try:
        client.rpush(keys.of(queue).waiting, *RAW_ELEMENTS)
        for job_id, (body, _) in bodies.items():
            client.rpush(keys.of(queue).waiting, keys.pack_element(job_id, body))
        client.rpush(keys.of(queue).bell, "1")
    finally:
        disconnect(client)
    good = Workload(tmp_path / "ledger")
    with opened(url) as backend:
        for name in spread:
            enqueue_ledger(good, backend, name, 5)
    # When one worker serving the three queues consumes them
    worker = launch_on(url, "--pool", "processes", "--concurrency", "1", "--lease", "2",
                       *queue_args(spread))  # fmt: skip
    [child] = worker.wait_workers(1, timeout_s=30)
    finals = wait_finals(url, good, timeout_s=45)
    bad = Workload(good.path)
    for job_id in bodies:
        bad.add(job_id, job_id, queue)
    bad_finals = wait_finals(url, bad, timeout_s=15)
    # Then each bad one is dead-lettered exactly once on its queue, with its precise reason
    with opened(url) as backend:
        letters = backend.dead_letters(queue, limit=1000)
    by_id = {letter.job_id: letter for letter in letters if letter.job_id in bodies}
    for job_id, (body, reason) in bodies.items():
        assert (by_id[job_id].reason, by_id[job_id].body) == (reason, body), job_id
        assert [(r.state, r.attempts) for r in bad_finals[job_id].records] == [("dead", 1)]
    raw = Counter(letter.reason for letter in letters if letter.job_id not in bodies)
    assert raw == Counter(RAW_ELEMENTS.values())
    assert len(letters) == len(bodies) + len(RAW_ELEMENTS)
    # And the worker kept going in the same process: the good jobs of every queue are done
    assert_ledger_invariant(good, finals, set(), may_repeat=set())
    assert {final.state for final in finals.values()} == {"done"}
    assert worker.proc.poll() is None
    assert worker.worker_pids() == [child]
    assert "died" not in worker.log()
    assert fenced(url, queue) == 0
    assert_nothing_left(url, spread)


@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
@pytest.mark.timeout(180)
def test_a_killed_master_is_replaced_and_work_goes_on(
    redis_cluster: ClusterOfSix, redis_cluster_url: str, spread: list[str], tmp_path: Path,
    durable: bool, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given workers serving three queues on three masters, a producer putting jobs on the
    # busy one (on the second master) and a backlog everywhere
    busy = keys.of(spread[1]).waiting
    plan = FailoverPlan(
        label="cluster",
        url=redis_cluster_url,
        queues=[spread[1], spread[0], spread[2]],
        master_port=partial(redis_cluster.master_of, busy),
        kill=partial(redis_cluster.kill_master_of, busy),
        promoted=partial(redis_cluster.wait_promoted, busy),
        # One replica per master: a durable write needs the killed node back as a replica.
        restore=redis_cluster.heal if durable else None,
        durable=durable,
        backlog=soak(100),
    )
    # When the busy queue's master is SIGKILLed mid-run (figures printed)
    checked_failover(plan, tmp_path, shown_by(capsys))
    # Then its replica took over, and every job put before or after ended done or dead,
    # exactly once unless it was in flight during the failover; none lost with --durable
    # (checked_failover asserts it)
