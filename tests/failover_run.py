"""One failover under load, measured: the master of a busy queue SIGKILLed mid-run.

Shared by the Cluster and Sentinel fault tests and ``scripts/bench_cluster.py``. The topology
is given as callables (``FailoverPlan``); the run is::

    backlog on every queue -> two `conveyor worker` (2 processes each, all queues)
    + a producer thread putting one ledger job every PUT_GAP_S on the busy queue
    + a sampler thread reading the busy queue's done counter every SAMPLE_GAP_S
    busy jobs running -> SIGKILL the master -> promotion (-> restart the killed node)
    -> the done counter moves again ("work flowing") -> producer stops -> everything settles

Figures (``FailoverFigures``), all from the kill (wall clock, ``time.time()``, as the ledger):
*promoted* when the topology's own view names a new master; *flowing* at the first sample
of the done counter above the first value read after the kill; *producer* at the first put
confirmed after the kill; *lost*: puts the producer saw confirmed (or the backlog's) that
never got a terminal record once nothing is left to run; *duplicated*: ledger keys started
more than once. Without ``--durable`` a put confirmed by a master that dies before its
replica got it is lost: ``lag_bytes`` (the replica's offset behind the master, sampled just
before the kill) bounds that window.

With ``--durable`` and one replica per master, the promoted replica has no replica left: no
write can be confirmed until one is back, so the plan's ``restore`` restarts the killed node
(as an orchestrator would) and *flowing* includes that restart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.backends.redis.queue import RedisQueue
from services.settings import QueueSettings
from tests.failover_probes import DoneSampler, SteadyProducer, replica_lag
from tests.test_redis_system import ACK_SLACK_S, in_flight, read_runs, wait_for
from tests.topology_workload import (
    Final,
    Workers,
    Workload,
    assert_ledger_invariant,
    assert_nothing_left,
    dead_ids,
    enqueue_ledger,
    opened,
    poll_finals,
)

DEADLINE_S = 60.0
"""Longest wait for a failover, for work to flow again, for everything to settle."""


@dataclass(frozen=True)
class FailoverPlan:
    """What a failover run needs from its topology."""

    label: str
    url: str
    queues: Sequence[str]
    """The busy queue (whose master is killed) first, the others after it."""
    master_port: Callable[[], int]
    """The port of the busy queue's master now."""
    kill: Callable[[], int]
    """SIGKILL the busy queue's master; its port."""
    promoted: Callable[[int], int]
    """Wait until a replica of the killed port is the master; its port."""
    restore: Callable[[], None] | None = None
    """Restart the killed node, for durable runs with one replica per master."""
    durable: bool = False
    backlog: int = 100
    lease_s: float = 2.0


@dataclass
class FailoverFigures:
    """What one run measured (seconds from the kill)."""

    label: str
    killed_port: int
    promoted_s: float
    restored_s: float | None
    flowing_s: float
    producer_s: float
    jobs: int
    produced: int
    lost: dict[str, float]
    """Lost job id -> seconds its put was confirmed before the kill."""
    duplicated: set[str]
    suspects: set[str]
    lag_bytes: int
    others_done: int
    """Jobs of the other queues that ended while the busy queue's master was away."""

    def line(self) -> str:
        restored = f", killed node back {self.restored_s:.2f} s" if self.restored_s else ""
        return (
            f"{self.label}: master :{self.killed_port} SIGKILLed; promoted {self.promoted_s:.2f} s"
            f"{restored}; work flowing again {self.flowing_s:.2f} s; producer's first confirmed "
            f"put {self.producer_s:.2f} s | jobs {self.jobs} ({self.produced} put during the "
            f"run), lost {len(self.lost)}, duplicated {len(self.duplicated)} (in flight during "
            f"the fault: {len(self.suspects)}); replica behind by <= {self.lag_bytes} bytes "
            f"before the kill; other queues' jobs ended during the outage: {self.others_done}"
        )


def run_failover(plan: FailoverPlan, workers: Workers, ledger: Path) -> FailoverRun:
    """Load the queues, kill the busy queue's master mid-run, follow, let everything settle."""
    work = Workload(ledger)
    busy = plan.queues[0]
    backend = RedisQueue(plan.url, QueueSettings(durable_replicas=int(plan.durable)))
    try:
        for index, queue in enumerate(plan.queues):
            enqueue_ledger(work, backend, queue, plan.backlog if index == 0 else plan.backlog // 2)
    finally:
        backend.close()
    args = ["--pool", "processes", "--concurrency", "2", "--lease", str(plan.lease_s)]
    args += [arg for queue in plan.queues for arg in ("--queue", queue)]
    started = [workers.start(plan.url, *args, *["--durable"] * plan.durable) for _ in range(2)]
    for worker in started:
        worker.wait_workers(2, timeout_s=30)
    sampler = DoneSampler(plan.url, busy)
    producer = SteadyProducer(plan.url, busy, ledger, durable=plan.durable)
    sampler.start()
    producer.start()
    try:
        timeline = _kill_and_follow(plan, work, sampler, producer)
    finally:
        producer.stop()
        sampler.stop()
    for job_id, key, _ in producer.confirmed:
        work.add(job_id, key, busy)
    for job_id, key in producer.unconfirmed:
        work.add(job_id, key, busy)
    finals, missing = poll_finals(plan.url, work, DEADLINE_S * 1.5, quiet_ends=True)
    confirmed_at = {job_id: at for job_id, _, at in producer.confirmed}
    unconfirmed = {job_id for job_id, _ in producer.unconfirmed}
    lost = {
        job_id: timeline.killed_at - confirmed_at.get(job_id, 0.0)
        for job_id in missing
        if job_id not in unconfirmed
    }
    figures = _figures(plan, timeline, work, lost, produced=len(producer.confirmed))
    return FailoverRun(figures, work, finals, sorted(lost))


@dataclass
class FailoverRun:
    """A run's figures, and what the caller checks: the jobs, their records, the lost ids."""

    figures: FailoverFigures
    work: Workload
    finals: dict[str, Final]
    lost: list[str]


@dataclass(frozen=True)
class Timeline:
    """Wall-clock times of one run (``time.time()``, as the ledger's)."""

    killed_port: int
    killed_at: float
    promoted_at: float
    restored_at: float | None
    flowing_at: float
    producer_at: float
    lag_bytes: int


def suspect_window(plan: FailoverPlan, flowing_at: float) -> float:
    """Until when a run counts as in flight during the failover: a lease after work flows
    again (a consumer back from the outage recovers expired leases after one lease), plus
    the time an ack may take. Runs that start later must run exactly once."""
    return flowing_at + plan.lease_s + ACK_SLACK_S


def _busy(work: Workload, queue: str) -> bool:
    """At least 10 of ``queue``'s jobs ended and one of them runs now."""
    runs = [run for run in read_runs(work.path) if run.key.startswith(f"{queue}-")]
    return sum(run.ended is not None for run in runs) >= 10 and any(r.ended is None for r in runs)


def _kill_and_follow(
    plan: FailoverPlan, work: Workload, sampler: DoneSampler, producer: SteadyProducer
) -> Timeline:
    busy = plan.queues[0]
    wait_for(f"jobs of {busy} to run", lambda: _busy(work, busy), DEADLINE_S, poll_s=0.005)
    lag = max(replica_lag(plan.master_port()) for _ in range(5))
    killed_port = plan.kill()
    killed_at = time.time()
    plan.promoted(killed_port)
    promoted_at = time.time()
    restored_at = None
    if plan.restore is not None:
        plan.restore()
        restored_at = time.time()

    def flowing() -> bool:
        producer.check()
        return sampler.flowing_since(killed_at) is not None

    wait_for("work to flow again", flowing, DEADLINE_S)
    flowing_at = sampler.flowing_since(killed_at) or 0.0

    def followed() -> float | None:
        producer.check()
        return next((at for *_, at in list(producer.confirmed) if at > killed_at), None)

    # The producer keeps going past the fault's window (``suspect_window``): the jobs it
    # puts then must run exactly once.
    window_end = suspect_window(plan, flowing_at)
    wait_for(
        "the producer to follow",
        lambda: followed() is not None and time.time() > window_end + 1.0,
        DEADLINE_S,
    )
    return Timeline(
        killed_port, killed_at, promoted_at, restored_at, flowing_at, followed() or 0.0, lag
    )


def _figures(
    plan: FailoverPlan, timeline: Timeline, work: Workload, lost: dict[str, float], produced: int
) -> FailoverFigures:
    runs = read_runs(work.path)
    killed_at = timeline.killed_at
    window_end = suspect_window(plan, timeline.flowing_at)
    starts: dict[str, int] = {}
    for run in runs:
        starts[run.key] = starts.get(run.key, 0) + 1
    others = tuple(f"{queue}-" for queue in plan.queues[1:])
    others_done = sum(
        1
        for run in runs
        if run.key.startswith(others)
        and run.ended is not None
        and killed_at <= run.ended <= timeline.flowing_at
    )
    restored = timeline.restored_at
    return FailoverFigures(
        label=plan.label + (" --durable" if plan.durable else ""),
        killed_port=timeline.killed_port,
        promoted_s=timeline.promoted_at - killed_at,
        restored_s=None if restored is None else restored - killed_at,
        flowing_s=timeline.flowing_at - killed_at,
        producer_s=timeline.producer_at - killed_at,
        jobs=len(work.keys),
        produced=produced,
        lost=lost,
        duplicated={key for key, count in starts.items() if count > 1},
        suspects=in_flight(runs, killed_at, until=window_end),
        lag_bytes=timeline.lag_bytes,
        others_done=others_done,
    )


LOSS_WINDOW_S = 1.0
"""Without --durable, a put confirmed this long before the kill must have reached the
replica (replication on loopback lags by milliseconds): only newer ones may be lost."""


def assert_failover_invariant(run: FailoverRun, plan: FailoverPlan, workers: Workers) -> None:
    """Nothing confirmed lost with --durable (without: only puts of the replication window);
    every other job done or dead exactly once, repeats only if in flight during the fault;
    every worker still running; nothing left in the queues."""
    if plan.durable:
        assert not run.lost, f"--durable lost {len(run.lost)} confirmed job(s)"
    late = {job: s for job, s in run.figures.lost.items() if not 0 <= s <= LOSS_WINDOW_S}
    assert not late, f"lost jobs confirmed outside the replication window: {late}"
    with opened(plan.url) as backend:
        dead = dead_ids(backend, plan.queues)
    assert_ledger_invariant(
        run.work, run.finals, dead, may_repeat=run.figures.suspects, lost=run.lost
    )
    assert all(w.proc.poll() is None for w in workers.started), "a worker exited"
    assert_nothing_left(plan.url, plan.queues)


@contextlib.contextmanager
def failover_workers(log_dir: Path) -> Iterator[Workers]:
    """``Workers`` for a failover run: their log tails printed if the run fails, all killed."""
    workers = Workers(log_dir)
    try:
        yield workers
    except BaseException:
        print(workers.tails())
        raise
    finally:
        workers.close()


def checked_failover(
    plan: FailoverPlan, log_dir: Path, show: Callable[[str], None]
) -> FailoverFigures:
    """``run_failover`` with its own workers; ``show`` gets the figures' line, then
    ``assert_failover_invariant`` checks the run."""
    with failover_workers(log_dir) as workers:
        run = run_failover(plan, workers, log_dir / "ledger")
        show(run.figures.line())
        assert_failover_invariant(run, plan, workers)
    return run.figures


def shown_by(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Prints a line in the test output even when pytest captures it (the figures)."""

    def show(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}")

    return show
