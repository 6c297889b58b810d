"""Periodic jobs with real processes on a real Redis: three `conveyor worker`s run schedulers,
the leader is SIGKILLed at a due second, and a ledger outside the queue (a line per execution,
written by the job) shows every due time ran exactly once; a restart fires nothing old;
`conveyor cron list` shows the schedule, last and next runs."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.cli.cron import stamp
from services.backends import open_queue
from services.periodic import job_id_for, schedule_group
from services.protocol import Backend
from services.testing.contract.helpers import poll
from tests import periodic_jobs
from tests.helpers_process import ROOT
from tests.periodic_jobs import LEDGER_ENV

pytestmark = pytest.mark.redis

JOBS = "tests.periodic_jobs:registry"
GROUP = schedule_group(periodic_jobs.registry.periodics())
"""The lease the schedulers of these entries compete for."""
LEASE_S = 2.0


class Fleet:
    """Worker processes started in their own sessions, output to files, killed at the end."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.ledger = tmp / "ledger.txt"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queue: str, *flags: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        command = [sys.executable, "-m", "consumer", "worker", "--url", self.url, "--jobs", JOBS,
                   "--queue", queue, "--concurrency", "1", "--lease", str(LEASE_S),
                   "--shutdown-timeout", "2", *flags]  # fmt: skip
        env = {**os.environ, LEDGER_ENV: str(self.ledger)}
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def executions(self) -> int:
        return len(self.ledger.read_text().splitlines()) if self.ledger.exists() else 0


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[Fleet]:
    started = Fleet(redis_url, tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def backend(redis_url: str) -> Iterator[Backend]:
    opened = open_queue(redis_url)
    yield opened
    opened.close()


def last_tick(backend: Backend) -> float | None:
    return backend.last_fired(["tick"]).get("tick")


def drained(backend: Backend, queue: str) -> bool:
    counts = backend.counts(queue)
    return counts.waiting == 0 and counts.delayed == 0 and counts.in_flight == 0


def assert_ran_once_each(backend: Backend, fleet: Fleet, first: int, last: int) -> None:
    """Every due second in [first, last] fired and ran; none outside; one execution each."""
    statuses = {t: backend.status(job_id_for("tick", t)) for t in range(first - 1, last + 2)}
    missing = [t for t in range(first, last + 1) if statuses[t] is None]
    assert missing == [], f"due times never fired: {missing}"
    assert all(statuses[t].status == "done" for t in range(first, last + 1))  # type: ignore[union-attr]
    assert statuses[first - 1] is None and statuses[last + 1] is None
    assert fleet.executions() == last - first + 1, "a due time ran twice (or never)"


def test_three_schedulers_leader_killed_at_a_due_second(fleet: Fleet, backend: Backend) -> None:
    # Given one consumer of the periodic job's queue and three schedulers (consuming elsewhere)
    consumer = fleet.start("cron-q", "--no-scheduler")
    schedulers = [fleet.start("idle") for _ in range(3)]
    baseline = poll(lambda: last_tick(backend), timeout_s=60)  # first sight: "now" remembered
    assert baseline is not None
    # The first due time after the first sight (it may have fired before the poll saw the mark)
    first = math.floor(baseline) + 1
    while backend.status(job_id_for("tick", first - 1)) is not None:
        first -= 1
    assert poll(lambda: (last_tick(backend) or 0) >= first + 3, timeout_s=60)
    # When the leader is SIGKILLed (with its process group) just after a due second
    leader = backend.leader(group=GROUP)
    assert leader is not None
    pid = int(leader.split(":")[1])
    victim = next(p for p in schedulers if p.pid == pid)
    poll(lambda: time.time() % 1 < 0.02, timeout_s=3, interval_s=0.001)
    killed_at = time.time()
    os.killpg(pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # Then another takes over and fires on, past the gap
    assert poll(lambda: (backend.leader(group=GROUP) or leader) != leader, timeout_s=30)
    assert poll(lambda: (last_tick(backend) or 0) >= killed_at + 4, timeout_s=60)
    for proc in schedulers:
        fleet.stop(proc)
    last = last_tick(backend)
    assert last is not None and first < killed_at < last
    assert poll(lambda: drained(backend, "cron-q"), timeout_s=60)
    # Then every due second from the first to the last fired ran exactly once
    assert_ran_once_each(backend, fleet, first, int(last))
    print(f"\n{int(last) - first + 1} due times, leader killed at +{killed_at - first:.2f} s")

    # When a scheduler starts again after all were stopped
    again = fleet.start("idle")
    assert poll(lambda: (last_tick(backend) or 0) >= last + 3, timeout_s=60)
    fleet.stop(again)
    newest = last_tick(backend)
    assert newest is not None
    assert poll(lambda: drained(backend, "cron-q"), timeout_s=60)
    fleet.stop(consumer)
    # Then it fired only due times after the last one (the gap while none ran is "late": fired)
    assert_ran_once_each(backend, fleet, first, int(newest))


def test_cron_list_shows_schedule_last_and_next_runs(redis_url: str, backend: Backend) -> None:
    # Given one entry fired at a known due time, another never, and a leader
    backend.mark_fired("tick", 1_800_000_000.0)
    assert backend.lead("host:1:ab", 30.0, group=GROUP)
    # When the CLI lists them
    before = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "cron", "list", "--url", redis_url, "--jobs", JOBS],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Then each row shows its schedule, queue, policy, last and next run; and the leader
    assert done.returncode == 0, done.stderr
    header, *rows, leader = done.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "SCHEDULE", "QUEUE", "MISSED"]
    by_name = {line.split()[0]: line for line in rows}
    assert by_name.keys() == {"report", "tick"}
    assert "*/5 * * * *" in by_name["report"] and "reports" in by_name["report"]
    assert "catch_up(3)" in by_name["report"] and "  -  " in by_name["report"]
    assert "every 1s" in by_name["tick"] and "cron-q" in by_name["tick"]
    assert stamp(1_800_000_000.0) in by_name["tick"]
    next_tick = {stamp(math.floor(before) + k) for k in range(1, 30)}
    assert any(when in by_name["tick"] for when in next_tick)
    assert leader == "leader: host:1:ab"
