"""Concurrency and rate limits with real ``conveyor worker`` processes on a real redis-server.

Two supervisors of two worker processes each (four consumers) run jobs of ``tests.jobs_limits``,
which write a ledger of their starts and ends (with the process id and ``CLOCK_MONOTONIC``,
system-wide on Linux) to a file outside the queue; the ledger, not the queue, is the evidence:

* ``concurrency=2``: never more than two run at once, also while the test SIGKILLs processes
  holding permits (their permits lapse with the short lease and the jobs run again), and every
  job ends exactly once;
* ``rate="50/s"``: over ten seconds of a backlog, the starts hold 50 a second within 10 %.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.codec import encode_job
from services.job import Job
from tests.redis_fixtures import MakeQueue

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 1.5
"""The workers' lease: a SIGKILLed holder's permit comes back within it."""

Entry = tuple[str, str, int, float]
"""A ledger line: ``(start | end, key, pid, monotonic time)``."""


def read(path: Path) -> list[Entry]:
    """The ledger's complete lines."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            found.append((parts[0], parts[1], int(parts[2]), float(parts[3])))
    return found


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def workers(
    url: str, tmp_path: Path, supervisors: int = 2
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``supervisors`` ``conveyor worker`` processes of two worker processes each; stopped
    (SIGTERM, then SIGKILL of the group) on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(supervisors):
            log = (tmp_path / f"worker{n}.log").open("wb")
            command = [
                *(sys.executable, "-m", "consumer", "worker"),
                *("--jobs", "tests.jobs_limits:registry"),
                *("--url", url, "--pool", "processes", "-c", "2", "--lease", str(LEASE_S)),
                *("--group", f"limits-{n}", "--no-scheduler", "--shutdown-timeout", "5"),
            ]  # fmt: skip
            started.append(
                subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
            )
            log.close()
        yield started
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def put_jobs(make_queue: MakeQueue, name: str, calls: list[tuple[object, ...]]) -> None:
    producer = make_queue()
    items = []
    for args in calls:
        job = Job(name=name, args=args, queue="default")
        items.append((job.id, encode_job(job)))
    assert all(producer.put_many("default", items))


def most_at_once(entries: list[Entry], killed: dict[str, float]) -> int:
    """The most runs open at one instant: a start opens one; its end, or the SIGKILL of its
    process (``killed``: pid -> time), closes it."""
    events: list[tuple[float, int]] = []
    open_runs: dict[tuple[str, int], float] = {}
    for what, key, pid, at in entries:
        if what == "start":
            open_runs[(key, pid)] = at
            events.append((at, 1))
        elif open_runs.pop((key, pid), None) is not None:
            events.append((at, -1))
    for (_key, pid), _at in open_runs.items():
        if str(pid) in killed:
            events.append((killed[str(pid)], -1))
    running, most = 0, 0
    for _at, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at ties
        running += step
        most = max(most, running)
    return most


def test_concurrency_two_holds_across_four_processes_while_holders_are_killed(
    redis_url: str, make_queue: MakeQueue, tmp_path: Path
) -> None:
    # Given 24 jobs of a job with concurrency=2, and four worker processes on a short lease
    ledger = tmp_path / "ledger"
    keys = [f"k{n}" for n in range(24)]
    put_jobs(make_queue, "pair", [(str(ledger), key, 0.3) for key in keys])
    killed: dict[str, float] = {}
    with workers(redis_url, tmp_path):
        # When, three times, a process holding a permit is SIGKILLed in the middle of its job
        for _ in range(3):
            victim: list[int] = []

            def running_pid(victim: list[int] = victim) -> bool:
                ended = {(k, p) for what, k, p, _ in read(ledger) if what == "end"}
                runs = [(k, p) for what, k, p, _ in read(ledger) if what == "start"]
                live = [p for k, p in runs if (k, p) not in ended and str(p) not in killed]
                victim[:] = live[-1:]
                return bool(victim)

            wait_for("a running job to kill", running_pid, timeout_s=60)
            os.kill(victim[0], signal.SIGKILL)
            killed[str(victim[0])] = time.monotonic()

        # Then every job ends, each exactly once (the killed ones ran again)
        def all_ended() -> bool:
            return {k for what, k, _, _ in read(ledger) if what == "end"} == set(keys)

        wait_for("every job to end", all_ended, timeout_s=120)
    entries = read(ledger)
    ends = [k for what, k, _, _ in entries if what == "end"]
    assert sorted(ends) == sorted(keys), "a job ended twice or never"
    assert len([e for e in entries if e[0] == "start"]) == len(keys) + len(killed)
    # And never did more than two run at once, kills included
    assert most_at_once(entries, killed) == 2
    counts = make_queue().counts("default")
    assert (counts.done, counts.dead, counts.unsettled) == (len(keys), 0, 0)


def test_a_rate_of_50_a_second_holds_within_ten_percent_over_ten_seconds(
    redis_url: str, make_queue: MakeQueue, tmp_path: Path
) -> None:
    # Given a backlog of 14 seconds of a job limited to 50 starts a second, and four consumers
    ledger = tmp_path / "ledger"
    put_jobs(make_queue, "paced", [(str(ledger), f"r{n}") for n in range(700)])
    with workers(redis_url, tmp_path):
        # When they run it for a while
        wait_for("12 s of starts", lambda: len(read(ledger)) >= 600, timeout_s=90)
    # Then, over ten seconds after the first (workers starting up), 50 a second within 10 %
    starts = sorted(at for what, _, _, at in read(ledger) if what == "start")
    begin = starts[0] + 1.0
    window = [at for at in starts if begin <= at < begin + 10.0]
    rate = len(window) / 10.0
    print(f"rate over 10 s: {rate:.1f} starts/s (target 50)")
    assert 45.0 <= rate <= 55.0, rate
