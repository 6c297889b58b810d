"""Whole ``conveyor`` processes for the tests: the command line of a slow ``conveyor run``, its
start in a process group of its own (like a job a terminal runs), and its children (Linux /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the directory every ``conveyor`` command of the tests runs in."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie not yet reaped still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children_of(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc); a thread that ends while it is read is passed
    over."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


def slow_run_command(*, producers: int, concurrency: int = 2) -> list[str]:
    """`conveyor run` on jobs slow enough to kill or interrupt it mid-run."""
    return [
        *(sys.executable, "-m", "consumer", "run", "--jobs", "tests.jobs:registry"),
        *("--feed", "tests.feeds:slow_feed", "--producers", str(producers)),
        *("-c", str(concurrency)),
    ]


@contextlib.contextmanager
def in_own_group(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """Run ``command`` in a new session, its output in text pipes. On the way out, a group that
    still runs is SIGKILLed, and the pipes are closed on every path: left to the garbage
    collector they would raise a ResourceWarning (an error under filterwarnings=error) in a
    later test."""
    parent = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield parent
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        parent.communicate(timeout=10)
