"""System fault tests: real ``conveyor worker`` processes against the real redis-server.

Each test starts workers as subprocesses (``python -m consumer worker ...``, own session so a
test can signal a whole process group), enqueues ledger jobs (``tests.jobs_system``), injects a
fault (SIGKILL, SIGSTOP, SIGTERM, a dead redis-server, ``CLIENT KILL``, malformed messages) and
then checks the **ledger invariant** against the queue's own records:

* every enqueued job ends ``done`` (its status record says so and the ledger holds an ``end``
  line for it) or ``dead`` (it is in the queue's dead letters), none is lost: nothing is left
  waiting, in flight, or in a consumer's in-flight hash;
* a job started more than once only if one of its runs was *in flight during a fault*: it ran
  on a process that was killed or paused, or it overlapped a Redis outage, up to the moment its
  acknowledgement could have reached Redis (``ACK_SLACK_S`` after its ``end`` line).

Worker logs go to files in ``tmp_path``; their tails are printed at teardown, so a failing test
shows them. Sizes grow with ``CONVEYOR_SOAK_JOBS`` (a multiplier, default 1: the CI version).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from producer import Producer
from services import exitcodes
from services.backends.redis import keys
from services.backends.redis.connection import phrase
from services.backends.redis.queue import RedisQueue
from services.protocol import JobStatus
from services.settings import QueueSettings
from tests import jobs_system
from tests.redis_fixtures import RedisServer

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
JOBS = "tests.jobs_system:registry"
QUEUE = "default"
IN_FLIGHT_HASHES = keys.inflight_key(QUEUE, "*")
"""The ``SCAN`` pattern of every consumer's in-flight hash of ``QUEUE``."""
ACK_SLACK_S = 1.0
"""Longest a finished job's ack may take to reach Redis on a loaded two-CPU machine: a run
whose ``end`` line came this close to a fault still counts as in flight during it."""


def soak(count: int) -> int:
    """``count`` scaled by ``CONVEYOR_SOAK_JOBS`` (a multiplier; default 1, the CI size)."""
    return count * max(1, int(os.environ.get("CONVEYOR_SOAK_JOBS", "1")))


def wait_for(what: str, done: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> float:
    """Poll ``done`` until it holds; returns the seconds it took, fails after ``timeout_s``."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


# -- processes --------------------------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (``Z`` for a zombie), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as exited)."""
    return _proc_state(pid) in (None, "Z")


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if not pid_gone(child)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class WorkerProcess:
    """One ``conveyor worker`` supervisor, started in its own session, logging to a file."""

    def __init__(self, url: str, log_path: Path, args: Sequence[str], jobs: str = JOBS) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "consumer", "worker", "--url", url, "--jobs", jobs]
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: the test can SIGSTOP/SIGCONT the supervisor with its
            # children at once, and clean up every process it started.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The supervisor's live worker processes (spawned children, not helper processes)."""
        return [pid for pid in children_of(self.pid) if "spawn_main" in _cmdline(pid)]

    def wait_workers(self, count: int, timeout_s: float = 20.0) -> list[int]:
        """Wait until ``count`` worker processes run and the log shows they took their queue."""
        found: list[int] = []

        def ready() -> bool:
            nonlocal found
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}"
            found = self.worker_pids()
            return len(found) >= count

        wait_for(f"{count} worker process(es) of pid {self.pid}", ready, timeout_s)
        return found

    def send(self, signum: int) -> None:
        """Signal the supervisor only (as ``docker stop`` or ``kill <pid>`` would)."""
        self.proc.send_signal(signum)

    def send_group(self, signum: int) -> None:
        """Signal the supervisor and all its children."""
        os.killpg(self.pid, signum)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.pid} did not exit within {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGCONT)  # a stopped group cannot act on SIGKILL
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def launch(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``conveyor worker`` processes; kills them and prints their logs at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str, jobs: str = JOBS) -> WorkerProcess:
        worker = WorkerProcess(redis_url, tmp_path / f"worker-{len(started)}.log", args, jobs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.cleanup()
    for index, worker in enumerate(started):
        # Shown by pytest only when the test failed.
        print(f"----- worker-{index} (pid {worker.pid}) log tail -----\n{worker.tail(150)}")


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client for inspecting and poking the server."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield client
    client.close()


@pytest.fixture
def inspect(redis_url: str) -> Iterator[RedisQueue]:
    """A queue connection for the test's own reads and enqueues."""
    queue = RedisQueue(redis_url, QueueSettings())
    yield queue
    queue.close()


# -- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One execution of a job on one process, from its ledger lines."""

    key: str
    pid: int
    started: float
    ended: float | None


def read_runs(path: Path) -> list[Run]:
    """Every run in the ledger, each ``start`` matched with the next ``end`` of its process."""
    lines = path.read_text().splitlines() if path.exists() else []
    open_runs: dict[tuple[str, int], list[float]] = {}
    runs: list[Run] = []
    for line in lines:
        event, key, pid_text, stamp_text = line.split()
        pid, stamp = int(pid_text), float(stamp_text)
        if event == "start":
            open_runs.setdefault((key, pid), []).append(stamp)
        else:
            started = open_runs[(key, pid)].pop(0)
            runs.append(Run(key, pid, started, stamp))
    for (key, pid), stamps in open_runs.items():
        runs += [Run(key, pid, stamp, None) for stamp in stamps]
    return runs


def ended_keys(path: Path) -> set[str]:
    return {run.key for run in read_runs(path) if run.ended is not None}


def in_flight(
    runs: Sequence[Run], since: float, until: float = float("inf"), pids: set[int] | None = None
) -> set[str]:
    """Keys with a run (on ``pids``, if given) in flight at some time in ``[since, until]``.

    A run is in flight from its ``start`` until ``ACK_SLACK_S`` after its ``end``: until then
    its acknowledgement may not have reached Redis.
    """
    return {
        run.key
        for run in runs
        if (pids is None or run.pid in pids)
        and run.started <= until
        and (run.ended is None or run.ended + ACK_SLACK_S >= since)
    }


@dataclass
class Batch:
    """Ledger jobs a test enqueued: job id -> ledger key."""

    path: Path
    keys: dict[str, str]

    def key_of(self, job_id: str) -> str:
        return self.keys[job_id]


def enqueue_ledger(
    queue: RedisQueue, path: Path, keys_: Sequence[str], seconds: Callable[[int], float]
) -> Batch:
    """Enqueue one ``ledger`` job per key in one batch."""
    producer = Producer(queue, registry=jobs_system.registry, name=QUEUE)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("ledger", (str(path), key, seconds(i)), {}) for i, key in enumerate(keys_)
    ]
    jobs = producer.enqueue_many(calls)
    return Batch(path, {job.id: key for job, key in zip(jobs, keys_, strict=True)})


def poll_settled(
    queue: RedisQueue, job_ids: Sequence[str], timeout_s: float
) -> tuple[dict[str, JobStatus], list[str]]:
    """Poll until every job is done or dead, or ``timeout_s`` passes: (final, unsettled)."""
    final: dict[str, JobStatus] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for job_id in set(job_ids) - set(final):
            status = queue.status(job_id)
            if status is not None and status.status in ("done", "dead"):
                final[job_id] = status
        missing = sorted(set(job_ids) - set(final))
        if not missing or time.monotonic() > deadline:
            return final, missing
        time.sleep(0.05)


def wait_settled(
    queue: RedisQueue, job_ids: Sequence[str], timeout_s: float
) -> dict[str, JobStatus]:
    """Poll until every job is done or dead; returns their final status records."""
    final, missing = poll_settled(queue, job_ids, timeout_s)
    if missing:
        pytest.fail(
            f"{len(missing)} of {len(job_ids)} job(s) not done or dead after {timeout_s} s "
            f"(depth {queue.depth(QUEUE)}):\n{describe_jobs(queue, missing[:5])}"
        )
    return final


def describe_jobs(queue: RedisQueue, job_ids: Sequence[str]) -> str:
    """Where each job is: its status, and the consumer holding it with that consumer's lease."""
    client = redis.Redis.from_url(queue.url, socket_timeout=5.0)
    try:
        now_s = float(client.time()[0])
        lines = []
        for job_id in job_ids:
            holder = client.hget(keys.of(QUEUE).running, keys.id_key(job_id))
            lease = client.zscore(keys.of(QUEUE).leases, holder) if holder else None
            left = f"{lease / 1000 - now_s:+.1f} s" if lease is not None else "none"
            held = client.hvals(keys.inflight_key(QUEUE, _text(holder))) if holder else []
            bodies = [value for value in held if keys.id_key(job_id) in value]
            lines.append(
                f"  {job_id}: {queue.status(job_id)}; held by {holder!r} (lease left {left}): "
                f"{bodies[0][:160]!r}"
                if bodies
                else f"  {job_id}: {queue.status(job_id)}; held by {holder!r}"
            )
        return "\n".join(lines)
    finally:
        client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def assert_nothing_left(admin: redis.Redis) -> None:
    """No job waiting, delayed, in flight, or held in any consumer's in-flight hash."""
    assert admin.llen(keys.of(QUEUE).waiting) == 0
    assert admin.zcard(keys.of(QUEUE).delayed) == 0
    assert admin.hlen(keys.of(QUEUE).running) == 0
    held = {name: admin.hlen(name) for name in admin.scan_iter(match=IN_FLIGHT_HASHES, count=1000)}
    assert not any(held.values()), f"jobs left in consumers' in-flight hashes: {held}"


def assert_ledger_invariant(
    batch: Batch,
    final: dict[str, JobStatus],
    queue: RedisQueue,
    *,
    may_repeat: set[str],
) -> Counter[str]:
    """Done jobs ran to an ``end``, dead ones are in the dead letters, repeats only if allowed.

    Returns how many times each key started.
    """
    runs = read_runs(batch.path)
    starts = Counter(run.key for run in runs)
    ended = {run.key for run in runs if run.ended is not None}
    assert set(starts) <= set(batch.keys.values()), "the ledger names jobs nobody enqueued"
    dead_ids = {letter.job_id for letter in queue.dead_letters(QUEUE, limit=100_000)}
    for job_id, key in batch.keys.items():
        state = final[job_id].status
        if state == "done":
            assert key in ended, f"{key} is done but never wrote its end line"
        else:
            assert job_id in dead_ids, f"{key} is {state} but not in the dead letters"
            assert key in may_repeat, f"{key} was dead-lettered without being in a fault"
    repeated = {key for key, count in starts.items() if count > 1}
    assert repeated <= may_repeat, (
        f"jobs ran twice without being in flight during a fault: {sorted(repeated - may_repeat)}"
    )
    return starts


def runs_a_job(path: Path, pid: int) -> bool:
    return any(run.pid == pid and run.ended is None for run in read_runs(path))


def ended_at_least(path: Path, count: int) -> bool:
    return len(ended_keys(path)) >= count


def logged_since(worker: WorkerProcess, mark: int, text: str) -> bool:
    return text in worker.log()[mark:]


def ledger_keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def quick(i: int) -> float:
    """20 to 50 ms: short jobs, varied so the workers do not run in lockstep."""
    return 0.02 + (i % 4) * 0.01


def fenced(admin: redis.Redis) -> int:
    return int(admin.hget(keys.of(QUEUE).counts, "fenced") or 0)


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_burst_worker_exits_0_once_the_queue_is_empty(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given jobs waiting on redis
    batch = enqueue_ledger(inspect, tmp_path / "ledger", ledger_keys("b", soak(40)), quick)
    # When a burst worker runs
    worker = launch("--burst", "--pool", "processes", "--concurrency", "2", "--lease", "2")
    # Then it exits 0 by itself, with every job done exactly once and nothing left behind
    assert worker.wait_exit(45) == exitcodes.OK, worker.tail()
    final = wait_settled(inspect, list(batch.keys), timeout_s=1)
    assert {status.status for status in final.values()} == {"done"}
    starts = assert_ledger_invariant(batch, final, inspect, may_repeat=set())
    assert set(starts.values()) == {1}
    assert_nothing_left(admin)


@pytest.mark.timeout(60)
def test_a_registry_that_fails_only_in_children_exits_3_without_a_restart_storm(
    launch: Callable[..., WorkerProcess], inspect: RedisQueue
) -> None:
    # Given a --jobs registry that imports in the supervisor but raises in every worker process
    inspect.put(QUEUE, "waiting", b"{}")
    started = time.monotonic()
    worker = launch("--concurrency", "2", jobs="tests.jobs_broken_in_child:registry")
    # When it starts, Then it stops by itself with BOOT_FAILURE, quickly
    code = worker.wait_exit(30)
    elapsed = time.monotonic() - started
    log = worker.log()
    assert code == exitcodes.BOOT_FAILURE, log
    assert elapsed < 15, f"took {elapsed:.1f} s to give up"
    # And the log says why, once per worker process at most: no restart loop
    assert "refuses to load in a worker process" in log
    assert "cannot start" in log
    assert log.count("refuses to load in a worker process") <= 2, log
    assert "restarting in" not in log
    # And the queue is untouched
    assert inspect.depth(QUEUE) == 1


@pytest.mark.timeout(90)
def test_sigkill_busy_children_then_a_supervisor_under_load(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given two workers (2 processes each) draining a few hundred short ledger jobs
    total = soak(240)
    batch = enqueue_ledger(inspect, tmp_path / "ledger", ledger_keys("k", total), quick)
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", "2")
    a, b = launch(*pool), launch(*pool)
    a.wait_workers(2)
    b.wait_workers(2)
    faults: list[tuple[set[int], float]] = []  # (killed pids, when)
    # When busy worker processes are SIGKILLed several times while jobs run
    for round_ in range(soak(4)):
        owner = (a, b)[round_ % 2]
        victim = owner.wait_workers(2)[round_ % 2]
        before = len(ended_keys(batch.path))
        wait_for(
            f"pid {victim} to be running a job",
            partial(runs_a_job, batch.path, victim),
            timeout_s=15,
            poll_s=0.005,
        )
        os.kill(victim, signal.SIGKILL)
        faults.append(({victim}, time.time()))
        wait_for(f"pid {victim} to die", partial(pid_gone, victim), timeout_s=5)
        # Progress between kills: the others keep working while the slot restarts.
        wait_for(
            "progress after a kill",
            partial(ended_at_least, batch.path, before + 10),
            timeout_s=15,
        )
    # And then a whole supervisor is SIGKILLed while its children are busy
    assert inspect.depth(QUEUE) > 0, "too few jobs: the queue drained before the last fault"
    orphans = set(a.wait_workers(2))
    a.send(signal.SIGKILL)
    faults.append((orphans, time.time()))
    assert a.wait_exit(5) == -signal.SIGKILL
    wait_for("the killed supervisor's children to exit", lambda: all(map(pid_gone, orphans)), 10)
    # Then every job ends done (or dead after three crashes), none lost, and only the jobs in
    # flight on a killed process ran twice
    final = wait_settled(inspect, list(batch.keys), timeout_s=60)
    runs = read_runs(batch.path)
    suspects = set().union(*(in_flight(runs, when, pids=pids) for pids, when in faults))
    starts = assert_ledger_invariant(batch, final, inspect, may_repeat=suspects)
    assert sum(starts.values()) >= total
    assert b.proc.poll() is None, "the surviving worker exited"
    assert "died: signal 9" in a.log() + b.log()
    assert_nothing_left(admin)


def enqueue_one(queue: RedisQueue, name: str, *args: Any) -> str:
    producer = Producer(queue, registry=jobs_system.registry, name=QUEUE)
    return producer.enqueue(name, *args).id


@pytest.mark.timeout(60)
def test_a_worker_paused_past_its_lease_is_fenced_and_the_job_runs_once_more_elsewhere(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given worker A (1 s lease) running a job, alone on the queue
    path = tmp_path / "ledger"
    single = ("--pool", "processes", "--concurrency", "1", "--lease", "1")
    a = launch(*single)
    [a_child] = a.wait_workers(1)
    job_id = enqueue_one(inspect, "ledger", str(path), "held", 1.5)
    wait_for("A to start the job", lambda: bool(read_runs(path)), timeout_s=15, poll_s=0.005)
    # When A's whole process group is SIGSTOPped past its lease, while it holds the job
    a.send_group(signal.SIGSTOP)
    wait_for("A to stop", lambda: _proc_state(a_child) == "T", timeout_s=5, poll_s=0.005)
    assert [(r.pid, r.ended) for r in read_runs(path)] == [(a_child, None)]
    fenced_before = fenced(admin)
    # Then worker B gets the job once A's lease expires, and runs it to done
    b = launch(*single)
    [b_child] = b.wait_workers(1)
    wait_for(
        "B to finish the job",
        lambda: any(r.pid == b_child and r.ended for r in read_runs(path)),
        timeout_s=15,
    )
    first = wait_settled(inspect, [job_id], timeout_s=5)[job_id]
    assert (first.status, first.result) == ("done", f'"held@{b_child}"'.encode())
    # When A resumes, finishes its run and acknowledges late
    a.send_group(signal.SIGCONT)
    wait_for("A's late ack to be fenced", lambda: fenced(admin) > fenced_before, timeout_s=10)
    # Then that ack was rejected: one completion recorded, B's, and the fence counted it
    assert fenced(admin) == fenced_before + 1
    assert admin.llen(keys.done_key(QUEUE, job_id)) == 1
    final = inspect.status(job_id)
    assert final == first
    runs = read_runs(path)
    assert sorted((r.pid, r.ended is not None) for r in runs) == sorted(
        [(a_child, True), (b_child, True)]
    )
    # And both workers keep working: no job lost afterwards
    batch = enqueue_ledger(inspect, tmp_path / "after", ledger_keys("after", 20), quick)
    rest = wait_settled(inspect, list(batch.keys), timeout_s=20)
    assert_ledger_invariant(batch, rest, inspect, may_repeat=set())
    assert {s.status for s in rest.values()} == {"done"}
    assert a.proc.poll() is None and b.proc.poll() is None
    assert_nothing_left(admin)


def make_durable(admin: redis.Redis) -> None:
    """Rewrite the AOF and wait until the rewrite is done: what is stored now is on disk.

    The rewritten base file is fsynced before Redis switches to it, so jobs enqueued before
    this call survive even the one-second window of ``appendfsync everysec``.
    """
    admin.bgrewriteaof()

    def rewritten() -> bool:
        info = admin.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    wait_for("the AOF rewrite", rewritten, timeout_s=10)
    assert admin.info("persistence")["aof_last_bgrewrite_status"] == "ok"


@pytest.mark.timeout(90)
def test_redis_sigkilled_and_restarted_mid_run_loses_nothing(
    launch: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a persistent Redis (AOF, fsync every second) holding a few hundred jobs on disk
    redis_server.kill()
    redis_server.start(persistent=True)
    redis_server.flush()  # the data dir may hold an older test's AOF
    lease = 2.0
    batch = enqueue_ledger(inspect, tmp_path / "ledger", ledger_keys("r", soak(300)), quick)
    make_durable(admin)
    # And two workers draining them
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", str(lease))
    workers = [launch(*pool), launch(*pool)]
    children = [set(w.wait_workers(2)) for w in workers]
    wait_for("a quarter done", lambda: len(ended_keys(batch.path)) >= len(batch.keys) // 4, 30)
    # When redis-server is SIGKILLed mid-run and stays away longer than the lease
    marks = [len(w.log()) for w in workers]
    redis_server.kill()
    killed_at = time.time()
    for worker, mark in zip(workers, marks, strict=True):
        wait_for(
            f"worker {worker.pid} to log the outage",
            partial(logged_since, worker, mark, "unavailable"),
            timeout_s=10,
        )
    wait_for("an outage longer than the lease", lambda: time.time() > killed_at + lease + 0.5, 10)
    # Then no worker process exited or was restarted
    assert [w.proc.poll() for w in workers] == [None, None]
    assert [set(w.worker_pids()) for w in workers] == children
    # When it comes back with its data
    redis_server.start(persistent=True)
    back_at = time.time()
    # Then the workers resume within seconds and every job enqueued before the kill ends done
    # or dead; only jobs in flight around the outage may have run twice
    resumed = wait_for(
        "a job to start after the restart",
        lambda: any(r.started > back_at for r in read_runs(batch.path)),
        timeout_s=10,
    )
    final = wait_settled(inspect, list(batch.keys), timeout_s=60)
    runs = read_runs(batch.path)
    suspects = in_flight(runs, killed_at, until=back_at + lease + ACK_SLACK_S)
    starts = assert_ledger_invariant(batch, final, inspect, may_repeat=suspects)
    assert sum(starts.values()) >= len(batch.keys)
    assert [w.proc.poll() for w in workers] == [None, None]
    assert [set(w.worker_pids()) for w in workers] == children
    logs = "".join(w.log() for w in workers)
    assert "died" not in logs
    assert "restarted EMPTY" not in logs
    assert resumed < 8, f"workers took {resumed:.1f} s to resume"
    assert_nothing_left(admin)


@pytest.mark.timeout(90)
def test_client_kill_storms_do_not_stop_workers_or_lose_jobs(
    launch: Callable[..., WorkerProcess],
    redis_url: str,
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given two workers draining a few hundred short jobs (4 slots x 20-50 ms: >= 4 s of work)
    lease = 2.0
    batch = enqueue_ledger(inspect, tmp_path / "ledger", ledger_keys("c", soak(500)), quick)
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", str(lease))
    workers = [launch(*pool), launch(*pool)]
    children = [set(w.wait_workers(2)) for w in workers]
    wait_for("some progress", lambda: len(ended_keys(batch.path)) >= 20, timeout_s=30)
    # When every other client connection is killed again and again for a few seconds
    storm = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    storm_from = time.time()
    killed = 0
    rounds = 0
    while time.time() < storm_from + 3.0 or rounds < 20:
        kind = ("TYPE", "normal") if rounds % 2 else ("SKIPME", "yes")
        killed += int(storm.execute_command("CLIENT", "KILL", *kind, "SKIPME", "yes"))  # type: ignore[no-untyped-call]
        rounds += 1
        time.sleep(0.02)  # the storm's cadence, not a synchronisation
    storm_to = time.time()
    storm.close()
    assert inspect.depth(QUEUE) > 0, "too few jobs: the queue drained during the storm"
    assert killed >= rounds, f"the storm killed only {killed} connections in {rounds} rounds"
    # Then the workers keep running, every job ends done, none is lost, and only jobs in
    # flight during the storm (or whose lease it let expire) ran twice
    final = wait_settled(inspect, list(batch.keys), timeout_s=30)
    runs = read_runs(batch.path)
    suspects = in_flight(runs, storm_from, until=storm_to + lease + ACK_SLACK_S)
    starts = assert_ledger_invariant(batch, final, inspect, may_repeat=suspects)
    assert {s.status for s in final.values()} == {"done"}
    assert sum(starts.values()) >= len(batch.keys)
    assert [w.proc.poll() for w in workers] == [None, None]
    assert [set(w.worker_pids()) for w in workers] == children
    assert_nothing_left(admin)


def blocked_clients(admin: redis.Redis) -> list[dict[str, Any]]:
    """Clients blocked in a command (``BLPOP`` on a doorbell) right now."""
    return [c for c in admin.client_list() if "b" in c["flags"]]


@pytest.mark.timeout(60)
def test_a_fetch_whose_reply_is_lost_strands_its_jobs(
    launch: Callable[..., WorkerProcess],
    redis_server: RedisServer,
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given an idle worker whose process we freeze once its doorbell wait has ended, so the next
    # thing it sends Redis is a FETCH
    lease = 2.0
    worker = launch("--pool", "processes", "--concurrency", "1", "--lease", str(lease))
    [child] = worker.wait_workers(1)
    wait_for("the worker to wait on its doorbell", lambda: bool(blocked_clients(admin)), 15)
    os.kill(child, signal.SIGSTOP)
    wait_for("its doorbell wait to time out", lambda: not blocked_clients(admin), 5)
    path = tmp_path / "ledger"
    job_id = enqueue_one(inspect, "ledger", str(path), "stranded", 0.0)
    assert redis_server.proc is not None
    # When Redis stalls (SIGSTOP) while that FETCH is sent, the worker's socket times out, and
    # only then Redis runs the FETCH: its reply goes to a connection the worker gave up on
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        mark = len(worker.log())
        os.kill(child, signal.SIGCONT)
        wait_for(
            "the worker's FETCH to time out",
            lambda: f"{phrase('get')}: " in worker.log()[mark:],
            timeout_s=15,
        )
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # Then the job must still run (done within a few leases) instead of staying "running" in
    # the in-flight hash of a consumer that keeps renewing its lease
    final, missing = poll_settled(inspect, [job_id], timeout_s=3 * lease + 5)
    assert not missing, f"stranded:\n{describe_jobs(inspect, missing)}"
    assert final[job_id].status == "done"
    assert [r.key for r in read_runs(path)] == ["stranded"]


@pytest.mark.parametrize("spin", [False, True], ids=["sleeping", "holding-the-gil"])
@pytest.mark.timeout(60)
def test_a_job_longer_than_the_lease_is_not_handed_out_twice(
    spin: bool,
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given two idle workers with a 1 s lease, each able to take a job
    single = ("--pool", "processes", "--concurrency", "1", "--lease", "1")
    a, b = launch(*single), launch(*single)
    a.wait_workers(1)
    b.wait_workers(1)
    # When a 3 s job runs (asleep, or busy in pure Python holding the GIL)
    path = tmp_path / "ledger"
    job_id = enqueue_one(inspect, "ledger", str(path), "long", 3.0, spin)
    final = wait_settled(inspect, [job_id], timeout_s=30)
    # Then the heartbeat kept its lease: it started once, finished once, nothing recovered
    assert [(r.key, r.ended is not None) for r in read_runs(path)] == [("long", True)]
    assert (final[job_id].status, final[job_id].attempts) == ("done", 1)
    assert inspect.stats().get("recovered", 0) == 0
    assert fenced(admin) == 0
    assert_nothing_left(admin)


@pytest.mark.timeout(60)
def test_a_poison_job_is_quarantined_and_the_others_all_finish(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a job that SIGKILLs its worker process, among normal jobs
    path = tmp_path / "ledger"
    producer = Producer(inspect, registry=jobs_system.registry, name=QUEUE)
    first = enqueue_ledger(inspect, path, ledger_keys("n", 15), quick)
    poison = producer.enqueue("kill_self", str(path), "poison").id
    rest = enqueue_ledger(inspect, path, ledger_keys("m", 15), quick)
    batch = Batch(path, {**first.keys, poison: "poison", **rest.keys})
    # When a worker with two processes runs them
    worker = launch("--pool", "processes", "--concurrency", "2", "--lease", "5")
    final = wait_settled(inspect, list(batch.keys), timeout_s=45)
    # Then the poison job is dead-lettered after killing three processes, with the reason
    [letter] = [d for d in inspect.dead_letters(QUEUE) if d.job_id == poison]
    assert letter.reason.startswith("worker died: signal 9 (SIGKILL"), letter.reason
    assert letter.reason.endswith(", 3 times"), letter.reason
    assert final[poison].status == "dead"
    runs = read_runs(path)
    deaths = [(r.pid, r.started) for r in runs if r.key == "poison"]
    assert len(deaths) == 3 and all(r.ended is None for r in runs if r.key == "poison")
    # And every normal job is done; only one finishing on a dying process could run twice
    suspects = {"poison"}
    for pid, when in deaths:
        suspects |= in_flight(runs, when, until=when, pids={pid})
    assert_ledger_invariant(batch, final, inspect, may_repeat=suspects)
    assert {final[i].status for i in batch.keys if i != poison} == {"done"}
    assert inspect.stats().get("quarantined") == 1
    assert worker.proc.poll() is None
    assert worker.log().count("died: signal 9") == 3
    assert_nothing_left(admin)


def malformed_bodies() -> dict[str, tuple[bytes, str]]:
    """Raw message bodies a producer of ours never writes, with the dead-letter reason each gets."""
    huge = json.dumps({"v": 1, "id": "x", "name": "ledger", "args": ["a" * (1 << 20)],
                       "enqueued_at": 1.0}).encode()  # fmt: skip
    record = {"v": 1, "id": "x", "name": "ledger", "args": [], "enqueued_at": 1.0}
    truncated = b'{"v":1,"id":"bad-truncated","name":"ledger","args":["/x",'
    bad = "malformed message: "
    return {
        "bad-truncated": (truncated, f"{bad}message is not valid JSON: Expecting value at byte 57"),
        "bad-pickle": (pickle.dumps(record), f"{bad}message is not UTF-8 JSON (looks like pickle)"),
        "bad-args-type": (
            json.dumps({**record, "args": "nope"}).encode(),
            f"{bad}field 'args' must be a list, not str",
        ),
        "bad-nested": (b"[" * 100_000 + b"]" * 100_000, f"{bad}message is nested too deeply"),
        "bad-huge": (
            huge,
            f"{bad}message is {len(huge)} bytes, over the 1048576-byte limit",
        ),
        "bad-list": (b"[1,2]", f"{bad}message is a JSON list, not a job object"),
        "bad-nan": (
            b'{"v":1,"id":"x","name":"ledger","args":[],"enqueued_at":NaN}',
            f"{bad}message is not valid JSON: NaN is not a JSON value",
        ),
        "bad-version": (
            json.dumps({**record, "v": 2}).encode(),
            f"{bad}message has format version 2; this build reads 1",
        ),
        "bad-unknown": (
            json.dumps({**record, "name": "nope"}).encode(),
            "unknown job 'nope' (not in this worker's registry)",
        ),
        "bad-empty": (b"", f"{bad}message is not valid JSON: Expecting value at byte 0"),
    }


@pytest.mark.timeout(60)
def test_malformed_messages_are_dead_lettered_once_and_the_worker_keeps_going(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given garbage elements written straight into the queue list, the way the backend writes
    # elements (header + body), with its doorbell rung, and then one good job
    bodies = malformed_bodies()
    for job_id, (body, _) in bodies.items():
        admin.rpush(keys.of(QUEUE).waiting, keys.pack_element(job_id, body))
    admin.rpush(keys.of(QUEUE).bell, "1")
    path = tmp_path / "ledger"
    good = enqueue_ledger(inspect, path, ["good"], quick)
    # When a worker consumes them
    worker = launch("--pool", "processes", "--concurrency", "1", "--lease", "2")
    [child] = worker.wait_workers(1)
    final = wait_settled(inspect, [*bodies, *good.keys], timeout_s=30)
    # Then each bad one is dead-lettered exactly once, with its precise reason
    letters = inspect.dead_letters(QUEUE, limit=1000)
    assert sorted(d.job_id for d in letters) == sorted(bodies)
    for letter in letters:
        body, reason = bodies[letter.job_id]
        assert (letter.reason, letter.body) == (reason, body), letter.job_id
        assert (final[letter.job_id].status, final[letter.job_id].attempts) == ("dead", 1)
    # And the worker kept running in the same process: the good job after them is done
    assert final[next(iter(good.keys))].status == "done"
    assert [r.key for r in read_runs(path)] == ["good"]
    assert worker.proc.poll() is None
    assert worker.worker_pids() == [child]
    assert "died" not in worker.log()
    assert fenced(admin) == 0
    assert_nothing_left(admin)


def enqueue_gated(queue: RedisQueue, path: Path, gate: Path, keys_: Sequence[str]) -> Batch:
    """One ``gated`` job per key: each runs until the file ``gate`` exists."""
    producer = Producer(queue, registry=jobs_system.registry, name=QUEUE)
    jobs = producer.enqueue_many([("gated", (str(path), key, str(gate)), {}) for key in keys_])
    return Batch(path, {job.id: key for job, key in zip(jobs, keys_, strict=True)})


def running_keys(path: Path, pids: set[int] | None = None) -> set[str]:
    return {r.key for r in read_runs(path) if r.ended is None and (pids is None or r.pid in pids)}


@pytest.mark.timeout(60)
def test_sigterm_lets_running_jobs_finish_and_exits_0(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a worker with two processes, each running a 1.5 s job, and more jobs waiting
    path = tmp_path / "ledger"
    worker = launch("--pool", "processes", "--concurrency", "2", "--shutdown-timeout", "20")
    worker.wait_workers(2)
    batch = enqueue_ledger(inspect, path, ledger_keys("t", 8), lambda i: 1.5)
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, timeout_s=15)
    # When the supervisor gets one SIGTERM (what `docker stop` sends)
    worker.send(signal.SIGTERM)
    running = running_keys(path)
    # Then the running jobs finish, the worker exits 0, the rest wait on the queue untouched
    assert worker.wait_exit(15) == exitcodes.OK, worker.tail()
    runs = read_runs(path)
    assert {r.key for r in runs} == running
    assert all(r.ended is not None for r in runs)
    assert inspect.depth(QUEUE) == len(batch.keys) - 2
    assert admin.hlen(keys.of(QUEUE).running) == 0
    finished = [i for i, key in batch.keys.items() if key in running]
    assert {s.status for s in wait_settled(inspect, finished, timeout_s=1).values()} == {"done"}


@pytest.mark.timeout(60)
def test_a_second_sigterm_hands_unfinished_jobs_back_at_once(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a worker (30 s lease, so a job that is not handed back waits 30 s) running two jobs
    # that will not finish by themselves, with more waiting
    path, gate = tmp_path / "ledger", tmp_path / "gate"
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", "30")
    worker = launch(*pool, "--shutdown-timeout", "30")
    worker.wait_workers(2)
    batch = enqueue_gated(inspect, path, gate, ledger_keys("g", 6))
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, timeout_s=15)
    # When it gets SIGTERM twice, the second once the first reached both worker processes (as
    # an operator pressing Ctrl+C twice: POSIX merges a signal sent while the same is pending)
    worker.send(signal.SIGTERM)
    wait_for(
        "both worker processes to drain",
        lambda: worker.log().count("INFO draining 1 running job(s)") == 2,
        timeout_s=5,
    )
    worker.send(signal.SIGTERM)
    stopped_at = time.monotonic()
    # Then it exits within 2 s, and every job is back on the queue, none left in flight
    assert worker.wait_exit(10) == exitcodes.OK, worker.tail()
    assert time.monotonic() - stopped_at < 2.0
    assert_nothing_left_in_flight(admin)
    assert inspect.depth(QUEUE) == len(batch.keys)
    # And another worker runs them at once, without waiting for the 30 s lease
    gate.touch()
    started = time.monotonic()
    launch(*pool)
    final = wait_settled(inspect, list(batch.keys), timeout_s=20)
    assert time.monotonic() - started < 15
    assert {s.status for s in final.values()} == {"done"}
    assert_ledger_invariant(batch, final, inspect, may_repeat=running_keys_at_stop(path))
    assert_nothing_left(admin)


def assert_nothing_left_in_flight(admin: redis.Redis) -> None:
    assert admin.hlen(keys.of(QUEUE).running) == 0
    held = [name for name in admin.scan_iter(match=IN_FLIGHT_HASHES) if admin.hlen(name)]
    assert not held, f"jobs still in flight in {held}"


def running_keys_at_stop(path: Path) -> set[str]:
    """Keys whose first run never ended (they were running when the worker stopped)."""
    first: dict[str, Run] = {}
    for run in sorted(read_runs(path), key=lambda r: r.started):
        first.setdefault(run.key, run)
    return {key for key, run in first.items() if run.ended is None}


@pytest.mark.timeout(60)
def test_sigkilled_supervisor_leaves_no_orphans_and_its_jobs_go_to_another_worker(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a worker with two processes, each running a job, and more jobs waiting
    path, gate = tmp_path / "ledger", tmp_path / "gate"
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", "2")
    a = launch(*pool)
    children = set(a.wait_workers(2))
    batch = enqueue_gated(inspect, path, gate, ledger_keys("o", 6))
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, timeout_s=15)
    # When its supervisor is SIGKILLed
    a.send(signal.SIGKILL)
    killed_at = time.monotonic()
    assert a.wait_exit(5) == -signal.SIGKILL
    # Then its worker processes exit within a few seconds: no orphans keep consuming
    wait_for("the orphaned workers to exit", lambda: all(map(pid_gone, children)), 5)
    assert time.monotonic() - killed_at < 5
    # And another worker gets every job, those that were running included: none lost
    gate.touch()
    launch(*pool)
    final = wait_settled(inspect, list(batch.keys), timeout_s=20)
    assert {s.status for s in final.values()} == {"done"}
    runs = read_runs(path)
    in_orphans = {r.key for r in runs if r.pid in children}
    assert len(in_orphans) == 2
    assert_ledger_invariant(batch, final, inspect, may_repeat=in_orphans)
    assert {r.key for r in runs if r.pid not in children and r.ended} == set(batch.keys.values())
    assert_nothing_left(admin)


@pytest.mark.timeout(60)
def test_a_worker_frozen_during_shutdown_is_killed_and_its_jobs_go_back_at_once(
    launch: Callable[..., WorkerProcess],
    inspect: RedisQueue,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a worker (30 s lease) whose two processes each run a job that will not finish
    path, gate = tmp_path / "ledger", tmp_path / "gate"
    pool = ("--pool", "processes", "--concurrency", "2", "--lease", "30")
    worker = launch(*pool, "--shutdown-timeout", "1")
    children = worker.wait_workers(2)
    batch = enqueue_gated(inspect, path, gate, ledger_keys("f", 4))
    wait_for("two jobs running", lambda: len(running_keys(path)) == 2, timeout_s=15)
    # When one worker process is frozen (SIGSTOP) and the supervisor gets SIGTERM
    os.kill(children[0], signal.SIGSTOP)
    worker.send(signal.SIGTERM)
    # Then after the 1 s deadline and the grace the frozen process is killed, the supervisor
    # exits 0, and every job is back on the queue at once, none left leased for 30 s
    assert worker.wait_exit(10) == exitcodes.OK, worker.tail()
    assert pid_gone(children[0])
    log = worker.log()
    assert "did not stop; killing it" in log
    left = [name for name in admin.scan_iter(match=IN_FLIGHT_HASHES) if admin.hlen(name)]
    assert not left, describe_jobs(inspect, list(batch.keys))
    assert log.count("did not stop; killing it") == 1
    assert_nothing_left_in_flight(admin)
    assert inspect.depth(QUEUE) == len(batch.keys)
    gate.touch()
    launch(*pool)
    final = wait_settled(inspect, list(batch.keys), timeout_s=20)
    assert {s.status for s in final.values()} == {"done"}
    assert_ledger_invariant(batch, final, inspect, may_repeat=running_keys_at_stop(path))
