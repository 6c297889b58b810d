"""Resizing a running supervisor with real worker processes: ``resize`` on memory and Redis,
SIGTTIN and SIGTTOU sent to a real ``conveyor worker``."""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from producer import Producer
from services import exitcodes
from services.protocol import JobQueue
from tests import jobs
from tests.helpers_process import pid_alive
from tests.helpers_supervisor import (
    no_child_outlives_its_test,
    queue_on_each_backend,
    stop,
    supervise,
    turn_until,
)
from tests.jobs import read_ledger
from tests.test_redis_system import WorkerProcess, launch, wait_for

__all__ = ["launch", "no_child_outlives_its_test", "queue_on_each_backend"]  # fixtures

_ENDED = re.compile(r"worker-(\d+) \(pid (\d+)\) ended: (.*)")


def ended(caplog: pytest.LogCaptureFixture) -> dict[int, str]:
    """How each process that left its seat ended, by pid, from the supervisor's log."""
    found = {}
    for record in caplog.records:
        match = _ENDED.fullmatch(record.getMessage())
        if match:
            found[int(match[2])] = match[3]
    return found


def test_grow_to_three_then_shrink_to_one_drains_the_two_and_loses_no_job(
    queue: JobQueue, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a supervisor of one process and a stream of half-second jobs that keep a ledger
    caplog.set_level(logging.INFO, logger="conveyor.supervisor")
    ledger = str(tmp_path / "ledger")
    producer = Producer(queue, registry=jobs.registry)
    batch = [producer.enqueue("ledger", ledger, f"k{n}", 0.5) for n in range(36)]
    supervisor = supervise(queue, prefetch=2)
    # When it grows to three
    supervisor.resize(3)
    # Then three children run, each of them busy with a job
    turn_until(supervisor, lambda: len(supervisor.pids()) == 3)
    first, *sent_away = supervisor.pids()
    assert all(pid_alive(pid) for pid in (first, *sent_away))
    turn_until(supervisor, lambda: supervisor.running() == 3)
    # When it shrinks back to one, mid-job
    supervisor.resize(1)
    # Then the two highest seats finish their jobs and exit 0, and are not replaced
    turn_until(supervisor, lambda: set(ended(caplog)) == set(sent_away))
    assert ended(caplog) == dict.fromkeys(sent_away, "exit code 0")
    assert supervisor.pids() == [first]
    # And every job ends done, none cut short or lost on the way
    turn_until(supervisor, lambda: all(_status(queue, job.id) == "done" for job in batch), 60)
    lines = read_ledger(ledger)
    for n in range(len(batch)):
        assert lines.count(f"start k{n}") == lines.count(f"end k{n}") >= 1
    assert supervisor.pids() == [first]
    assert stop(supervisor) == exitcodes.OK


def _status(queue: JobQueue, job_id: str) -> str | None:
    status = queue.status(job_id)
    return status.status if status is not None else None


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_sigttin_and_sigttou_change_the_number_of_worker_processes(
    launch: Callable[..., WorkerProcess],
) -> None:
    # Given `conveyor worker` with one process (of at most 4), catching the resize signals
    worker = launch("--pool", "processes", "--concurrency", "1", "--max-processes", "4")
    worker.wait_workers(1)
    for signum in (signal.SIGTTIN, signal.SIGTTOU):
        assert _catches(worker.pid, signum), f"the supervisor does not record {signum.name}"
    # When it gets SIGTTIN twice / Then it runs three (one signal at a time: two of a kind
    # sent at once may merge into one, in the kernel or in Python's handler)
    for count in (2, 3):
        worker.send(signal.SIGTTIN)
        wait_for(f"{count} worker processes", lambda count=count: _workers(worker) == count, 30)  # type: ignore[misc]
    # When it gets SIGTTOU / Then one of them drains and exits, and is not replaced
    worker.send(signal.SIGTTOU)
    wait_for("two worker processes", lambda: _workers(worker) == 2, 30)
    assert "died" not in worker.log()
    # And it still stops cleanly
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == exitcodes.OK, worker.tail()


def _workers(worker: WorkerProcess) -> int:
    assert worker.proc.poll() is None, worker.tail()
    return len(worker.worker_pids())


def _catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (Linux /proc: the SigCgt mask). Without
    one the kernel drops a stop signal sent to an orphaned process group such as this one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False
