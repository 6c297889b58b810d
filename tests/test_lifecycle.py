"""Whole process trees: no orphans when the parent is SIGKILLed, and `conveyor run` on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers_process import ROOT, children_of, in_own_group, slow_run_command


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it counts as gone once it has exited.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_children_of_a_sigkilled_conveyor_run_exit_within_seconds(tmp_path: Path) -> None:
    # Given `conveyor run` with 2 producers and 2 worker processes busy on slow jobs
    command = slow_run_command(producers=2)
    log = (tmp_path / "run.log").open("w")
    parent = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: len(children_of(parent.pid)) >= 4, 30), "children never started"
        children = children_of(parent.pid)
        # When the parent is SIGKILLed
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        # Then every child is gone within a few seconds
        assert wait_for(lambda: not any(alive(pid) for pid in children), 5), (
            f"orphans left: {[pid for pid in children if alive(pid)]}"
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        log.close()


def test_conveyor_run_works_on_redis(redis_url: str) -> None:
    # Given a real Redis and the demo on it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer",
            "run",
            "--url",
            redis_url,
            "--count",
            "60",
            "--concurrency",
            "2",
            "--retry-backoff",
            "0.05",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then every job is done or dead-lettered, exit 0
    assert result.returncode == 0, result.stderr[-2000:]
    assert "produced      60" in result.stdout
    assert "unaccounted   0" in result.stdout


def test_ctrl_c_reaches_the_pool_once_through_the_parent(tmp_path: Path) -> None:
    # Given `conveyor run` busy on slow jobs, in its own process group like a terminal job
    with in_own_group(slow_run_command(producers=1)) as parent:
        assert wait_for(lambda: len(children_of(parent.pid)) >= 3, 30), "children never started"
        # When Ctrl+C hits the whole process group
        os.killpg(parent.pid, signal.SIGINT)
        out, err = parent.communicate(timeout=60)
    # Then the workers ignored it (no KeyboardInterrupt), the parent drained them once and
    # printed its summary, exiting 130
    assert parent.returncode == 130, err[-2000:]
    assert "KeyboardInterrupt" not in err
    assert "draining" in err
    assert "summary" in out
