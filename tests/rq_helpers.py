"""Helpers of the RQ interoperability tests: an RQ queue, conveyor and rq commands, polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
T = TypeVar("T")


def rq_queue(redis_url: str, name: str = "q") -> Queue:
    """Plain RQ's queue ``name``, JSON-serialized (Conveyor's default)."""
    return Queue(name, connection=Redis.from_url(redis_url), serializer=JSONSerializer)


def fetch(redis_url: str, job_id: str) -> Job:
    """RQ's view of a job, read with RQ's own API."""
    return Job.fetch(job_id, connection=Redis.from_url(redis_url), serializer=JSONSerializer)


def conveyor_worker(
    redis_url: str, *args: str, env: dict[str, str] | None = None, burst: bool = True
) -> subprocess.Popen[str]:
    """``conveyor worker`` on the rq backend, queue ``q``, ``tests.rq_jobs:registry``, in a
    session of its own (so that a test can kill the whole tree)."""
    command = [
        str(BIN / "conveyor"),
        "worker",
        "--url",
        "rq+" + redis_url,
        "--queue",
        "q",
        "--jobs",
        "tests.rq_jobs:registry",
        "--no-scheduler",
        *(["--burst"] if burst else []),
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def conveyor_enqueue(redis_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``conveyor enqueue`` on the rq backend, queue ``q``, with ``args``; the job id printed."""
    enqueued = subprocess.run(
        [str(BIN / "conveyor"), "enqueue", "--url", "rq+" + redis_url, "--queue", "q", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return enqueued.stdout.strip()


def rq_worker(redis_url: str, *args: str) -> None:
    """A stock ``rq worker --burst`` on queue ``q`` (``args``: e.g. ``-S json``), to the end."""
    subprocess.run(
        [str(BIN / "rq"), "worker", "--burst", *args, "-u", redis_url, "q"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """Wait for ``proc`` to exit 0; its output."""
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out
    return out


def poll(check: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """``check()`` once it returns something truthy; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
