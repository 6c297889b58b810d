"""``conveyor scale``, ``pause`` and SIGTTIN/SIGTTOU on a running ``conveyor run`` (memory://):
the commands reach it through its control socket; worker processes are counted in /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.control_socket import socket_path
from consumer.remote_fleet import RemoteFleet
from services import exitcodes
from tests.helpers_process import ROOT, children_of, in_own_group, slow_run_command

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def control_dir() -> Iterator[Path]:
    """A short private directory for the sockets (a socket path has at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cv-", dir="/tmp") as found:
        yield Path(found) / "conveyor"


def conveyor(control_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    command = [sys.executable, "-m", "consumer", *args, "--url", "memory://"]
    return subprocess.run(
        [*command, "--control-dir", str(control_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def wait_until(what: str, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def spawned(pid: int) -> int:
    """The spawned children of ``pid``: its producers and worker processes (not the
    resource tracker)."""
    found = 0
    for child in children_of(pid):
        try:
            found += b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
    return found


def test_scale_pause_and_resize_signals_reach_a_running_memory_run(control_dir: Path) -> None:
    # Given a slow `conveyor run` on memory:// with one producer and one worker process (of 4)
    command = [*slow_run_command(producers=1, concurrency=1), "--max-processes", "4"]
    command += ["--control-dir", str(control_dir)]
    with in_own_group(command) as run:
        sock = socket_path(control_dir, run.pid)
        wait_until("its control socket", sock.exists, 30)
        # (its producer puts the feed's 400 jobs at once and exits: one worker is left)
        wait_until("one worker process", lambda: spawned(run.pid) == 1, 30)
        # When `conveyor scale default=3` is run from another process
        done = conveyor(control_dir, "scale", "default=3")
        # Then it stored version 1 in the run, which now runs 3 worker processes
        assert done.returncode == 0, done.stderr
        assert "group default: 3 worker process(es), version 1" in done.stdout
        wait_until("3 worker processes", lambda: spawned(run.pid) == 3, 20)
        # When the run gets SIGTTOU / Then one fewer: the group's total moved to 2
        os.kill(run.pid, signal.SIGTTOU)
        wait_until("2 worker processes", lambda: spawned(run.pid) == 2, 20)
        desired = RemoteFleet(sock).desired("default")
        assert desired is not None and (desired.processes, desired.version) == (2, 2)
        assert desired.set_by.startswith("SIGTTOU@")
        # And pause reaches it too
        assert conveyor(control_dir, "pause", "default").stdout.strip() == "paused default"
        assert conveyor(control_dir, "resume", "default").stdout.strip() == "resumed default"
        # When it is interrupted / Then it stops, and its socket is gone
        os.kill(run.pid, signal.SIGINT)
        _, errors = run.communicate(timeout=60)
    assert run.returncode == exitcodes.INTERRUPTED, errors[-2000:]
    assert f"control socket: {sock}" in errors
    assert not sock.exists()


def test_without_a_run_the_command_exits_1(control_dir: Path) -> None:
    done = conveyor(control_dir, "scale", "default=2")
    assert done.returncode == exitcodes.ERROR
    assert "no `conveyor run` of this user is running" in done.stderr


def test_a_run_without_a_usable_control_directory_runs_and_says_so(control_dir: Path) -> None:
    # Given a control directory others may enter (the run refuses to put its socket there)
    control_dir.mkdir(mode=0o755)
    control_dir.chmod(0o755)
    feed = ("--feed", "tests.feeds:small_feed", "--count", "6", "--producers", "1", "-c", "1")
    # When a run starts with it / Then it runs to the end, and says it has no control socket
    done = conveyor(control_dir, "run", "--jobs", "tests.jobs:registry", *feed)
    assert done.returncode == exitcodes.OK, done.stderr[-2000:]
    assert "no control socket (conveyor scale cannot reach this run)" in done.stderr
    assert "chmod 700" in done.stderr
