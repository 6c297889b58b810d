"""The fleet with real processes: ``conveyor worker --group`` supervisors on the session's
redis-server, driven by ``conveyor scale``, ``pause`` and ``resume`` run as commands.

Jobs are ledger jobs (``tests.jobs_system``): each appends ``start``/``end`` lines with its
process id and the time to a file outside the queue, which tells which process ran what, and
when. Worker processes are counted in /proc; everything waits by polling with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer import Producer
from services import exitcodes
from services.backends.redis.queue import RedisQueue
from services.job import Job
from services.protocol import FleetControl
from tests import jobs_system
from tests.redis_fixtures import MakeQueue
from tests.test_redis_system import ROOT, WorkerProcess, launch, wait_for

__all__ = ["launch"]  # a fixture

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]

GROUP = ("--group", "g", "--max-processes", "4", "--concurrency", "1")
"""Two of these make the issue's fleet: one process each to start, at most 4."""


def conveyor(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one ``conveyor`` command to its end (its own environment, no CONVEYOR_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args, "--url", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def queue(make_queue: MakeQueue) -> RedisQueue:
    return make_queue()


@pytest.fixture
def fleet(queue: RedisQueue) -> FleetControl:
    return queue.fleet()


class Ledger:
    """The ledger file of a test and what its lines say."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def enqueue(
        self, queue: RedisQueue, count: int, seconds: float, on: str = "default"
    ) -> list[Job]:
        """``count`` ledger jobs of ``seconds`` on queue ``on``, keyed ``<on><n>``."""
        producer = Producer(queue, registry=jobs_system.registry, name=on)
        return [
            producer.enqueue("ledger", str(self.path), f"{on}{n}", seconds) for n in range(count)
        ]

    def lines(self) -> list[list[str]]:
        return (
            [line.split() for line in self.path.read_text().splitlines()]
            if self.path.exists()
            else []
        )

    def first_start_by_pid(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for event, _, pid, at in self.lines():
            if event == "start":
                found.setdefault(int(pid), float(at))
        return found

    def events(self, event: str) -> Counter[str]:
        return Counter(key for kind, key, _, _ in self.lines() if kind == event)


def workers(*supervisors: WorkerProcess) -> int:
    """Worker processes of ``supervisors`` alive now; each supervisor must still run."""
    for supervisor in supervisors:
        assert supervisor.proc.poll() is None, supervisor.tail()
    return sum(len(s.worker_pids()) for s in supervisors)


def all_done(queue: RedisQueue, jobs: list[Job]) -> Callable[[], bool]:
    def done() -> bool:
        return all((s := queue.status(job.id)) is not None and s.status == "done" for job in jobs)

    return done


def test_scale_to_six_across_two_supervisors_then_to_one_loses_and_repeats_nothing(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue, fleet: FleetControl,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given two supervisors of group g with one worker process each, busy with 0.3 s jobs
    a, b = launch(*GROUP), launch(*GROUP)
    before = set(a.wait_workers(1) + b.wait_workers(1))
    ledger = Ledger(tmp_path / "ledger")
    jobs = ledger.enqueue(queue, 90, 0.3)
    wait_for("both taking jobs", lambda: before <= set(ledger.first_start_by_pid()), 20)
    # When an operator scales the group to 6
    done = conveyor(redis_url, "scale", "g=6")
    returned = time.time()
    assert done.returncode == 0, done.stderr
    assert "group g: 6 worker process(es), version 1" in done.stdout
    assert done.stdout.count(" runs 3") == 2, done.stdout
    # Then the fleet runs 6 worker processes within a few seconds, 3 per supervisor
    took = wait_for("6 worker processes", lambda: workers(a, b) == 6, 10)
    assert len(a.worker_pids()) == len(b.worker_pids()) == 3
    # And the 4 new processes take jobs; the time from the command to that is reported
    wait_for("4 new processes taking jobs", lambda: len(ledger.first_start_by_pid()) >= 6, 15)
    new = {p: t for p, t in ledger.first_start_by_pid().items() if p not in before}
    first, last = min(new.values()) - returned, max(new.values()) - returned
    with capsys.disabled():
        print(
            f"\n[fleet] conveyor scale g=6 -> 6 processes alive {took:.2f} s after it returned; "
            f"new processes' first jobs started {first:.2f} s (first) to {last:.2f} s (all 4)"
        )
    assert last < 10
    wait_for("the records to say 6", lambda: _alive_in_records(fleet) == 6, 10)
    # When it is scaled down to 1 while jobs run everywhere
    running = ledger.events("start") - ledger.events("end")
    assert len(running) >= 4, "scaled down too late to retire busy processes"
    assert conveyor(redis_url, "scale", "g=1").returncode == 0
    # Then 5 processes retire (a keeps 1: first by id), and every job ends done exactly once
    wait_for("1 worker process", lambda: workers(a, b) == 1, 30)
    wait_for("every job done", all_done(queue, jobs), 60)
    starts, ends = ledger.events("start"), ledger.events("end")
    assert set(ends) == {f"default{n}" for n in range(90)}
    assert set(starts.values()) == set(ends.values()) == {1}, "a job ran twice, or was cut"
    assert "died" not in a.log() + b.log()


def _alive_in_records(fleet: FleetControl) -> int:
    return sum(r.processes_alive for r in fleet.supervisors() if r.group == "g" and not r.lost)


def test_the_desired_total_survives_a_supervisor_restart(
    launch: Callable[..., WorkerProcess], redis_url: str, fleet: FleetControl
) -> None:
    # Given a supervisor of group g scaled to 3
    first = launch(*GROUP)
    first.wait_workers(1)
    assert conveyor(redis_url, "scale", "g=3").returncode == 0
    wait_for("3 worker processes", lambda: workers(first) == 3, 15)
    # When it is stopped (it leaves the fleet) and another one starts with --concurrency 1
    first.send(signal.SIGTERM)
    assert first.wait_exit(30) == exitcodes.OK, first.tail()
    assert fleet.supervisors() == []
    second = launch(*GROUP)
    # Then the new one runs the stored 3 at once, and the state is the one set before
    wait_for("3 worker processes again", lambda: workers(second) == 3, 15)
    desired = fleet.desired("g")
    assert desired is not None and (desired.processes, desired.version) == (3, 1)


def test_a_sigkilled_supervisor_shows_as_lost_and_its_jobs_are_recovered(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue, fleet: FleetControl,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given two supervisors of group g sharing 2 processes, 1 s leases, and 1 s jobs
    a, b = launch(*GROUP, "--lease", "1"), launch(*GROUP, "--lease", "1")
    victims = a.wait_workers(1)
    b.wait_workers(1)
    assert conveyor(redis_url, "scale", "g=2").returncode == 0
    ledger = Ledger(tmp_path / "ledger")
    jobs = ledger.enqueue(queue, 12, 1.0)
    wait_for("a's worker running a job", lambda: victims[0] in ledger.first_start_by_pid(), 20)
    # When a's supervisor is SIGKILLed (no clean leave)
    a.proc.kill()
    a.proc.wait(timeout=10)
    # Then the fleet lists it as lost, and b takes over the group's whole total
    wait_for("a listed lost", lambda: _lost_pids(fleet) == [a.pid], 15)
    wait_for("b runs 2", lambda: workers(b) == 2, 20)
    # And every job ends done, the killed one included (run again: a fault happened)
    wait_for("every job done", all_done(queue, jobs), 60)
    assert set(ledger.events("end")) == {f"default{n}" for n in range(12)}


def _lost_pids(fleet: FleetControl) -> list[int]:
    return [r.pid for r in fleet.supervisors() if r.lost]


def test_autoscale_grows_under_a_backlog_and_shrinks_when_idle(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue, fleet: FleetControl,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given a supervisor of group g autoscaled 1..4 at 2 waiting jobs per process, 1 s window
    worker = launch(*GROUP)
    worker.wait_workers(1)
    command = ["scale", "g", "--auto", "--min", "1", "--max", "4", "--backlog-per-worker", "2"]
    done = conveyor(redis_url, *command, "--stabilization", "1")
    assert done.returncode == 0, done.stderr
    assert "autoscale: 1..4 processes, 2 waiting job(s) per process" in done.stdout
    # When a backlog of 30 jobs arrives / Then it grows to its maximum
    jobs = Ledger(tmp_path / "ledger").enqueue(queue, 30, 0.2)
    wait_for("4 worker processes", lambda: workers(worker) == 4, 15)
    grown = fleet.desired("g")
    assert grown is not None and "grow" in grown.reason and grown.set_by.startswith("autoscale@")
    # When the backlog is worked off / Then it shrinks back to its minimum after the window
    wait_for("every job done", all_done(queue, jobs), 60)
    wait_for("1 worker process", lambda: workers(worker) == 1, 20)
    shrunk = fleet.desired("g")
    assert shrunk is not None and shrunk.processes == 1 and "shrink" in shrunk.reason
    assert shrunk.autoscale is not None  # still autoscaled


def test_a_paused_queue_holds_its_jobs_while_another_is_served(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue, tmp_path: Path
) -> None:
    # Given a supervisor consuming queues held and other
    worker = launch("--queue", "held", "--queue", "other", "--concurrency", "1")
    worker.wait_workers(1)
    ledger = Ledger(tmp_path / "ledger")
    # When held is paused (twice: the second says so) and the pause reached the worker
    assert conveyor(redis_url, "pause", "held").stdout.strip() == "paused held"
    again = conveyor(redis_url, "pause", "held")
    assert again.returncode == 0 and "held is already paused (by " in again.stdout
    wait_for("the pause logged", lambda: "paused: held" in worker.log(), 10)
    marker = ledger.enqueue(queue, 1, 0.0, on="other")  # its fetch began after the pause
    wait_for("the marker done", all_done(queue, marker), 10)
    held = ledger.enqueue(queue, 3, 0.0, on="held")
    other = ledger.enqueue(queue, 3, 0.0, on="other")
    # Then other's jobs run and held's stay waiting
    wait_for("other's jobs done", all_done(queue, other), 10)
    assert queue.counts("held").waiting == 3
    assert all((s := queue.status(job.id)) is not None and s.status == "queued" for job in held)
    # When it is resumed / Then its jobs run
    assert conveyor(redis_url, "resume", "held").stdout.strip() == "resumed held"
    assert conveyor(redis_url, "resume", "held").stdout.strip() == "held is not paused"
    wait_for("held's jobs done", all_done(queue, held), 10)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("scale", "g=abc"), exitcodes.USAGE, "N must be a whole number"),
        (("scale", "g=-1"), exitcodes.USAGE, "N must be a whole number"),
        (("scale", "g"), exitcodes.USAGE, "say GROUP=N"),
        (("scale", "g=1", "--min", "1"), exitcodes.USAGE, "go with --auto"),
        (
            ("scale", "g", "--auto", "--min", "5", "--max", "2", "--backlog-per-worker", "1"),
            2,
            "min",
        ),
        (("pause", "bad queue"), exitcodes.USAGE, "invalid queue name"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    redis_url: str, args: tuple[str, ...], code: int, says: str
) -> None:
    done = conveyor(redis_url, *args)
    assert (done.returncode, done.stdout) == (code, "")
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unreachable_backend_exits_1() -> None:
    for args in (("scale", "g=2"), ("pause", "q"), ("resume", "q")):
        done = conveyor("redis://127.0.0.1:1/0", *args)
        assert done.returncode == exitcodes.ERROR and "unreachable" in done.stderr, done.stderr


@pytest.fixture(autouse=True)
def _no_leftover_fleet(fleet: FleetControl) -> Iterator[None]:
    """Each test starts with an empty fleet (the database was flushed for it)."""
    assert fleet.supervisors() == [] and fleet.groups() == []
    yield
