"""``conveyor dead list|show|requeue|purge`` on a real redis-server: filters by job name, a
letter shown whole, purge with and without confirmation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from producer import Producer
from services.backends.redis.queue import RedisQueue
from services.job import Job
from services.settings import QueueSettings
from tests.test_redis_system import ROOT

pytestmark = pytest.mark.redis


def conveyor(url: str, *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """``conveyor dead ARGS --queue mail --url URL``, ``answer`` typed at a prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "dead", *args, "--queue", "mail", "--url", url],
        cwd=ROOT, env=env, input=answer, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def bury(url: str, *names: str) -> list[Job]:
    """One dead letter on queue mail per job name, in order (the last is the newest)."""
    queue = RedisQueue(url, QueueSettings())
    jobs = []
    for n, name in enumerate(names):
        job = Producer(queue, name="mail").enqueue(name, n, 1)
        (delivery,) = queue.get(["mail"], timeout_s=5)
        queue.dead_letter(delivery, f"Traceback (most recent call last):\nValueError: {name} {n}")
        jobs.append(job)
    queue.close()
    return jobs


def ids_listed(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split()[0] for line in result.stdout.splitlines()]


def test_list_and_requeue_filter_by_job_name(redis_url: str) -> None:
    # Given dead letters of add, mul, add
    first, mul, last = bury(redis_url, "add", "mul", "add")
    # When listed by name: only that job's, newest first; --limit keeps the newest
    assert ids_listed(conveyor(redis_url, "list", "--job", "add")) == [last.id, first.id]
    assert ids_listed(conveyor(redis_url, "list", "--job", "add", "--limit", "1")) == [last.id]
    assert ids_listed(conveyor(redis_url, "list", "--job", "nope")) == []
    # When the add letters are requeued: two go back, mul's stays
    requeued = conveyor(redis_url, "requeue", "--job", "add")
    assert requeued.returncode == 0 and "requeued 2 job(s)" in requeued.stdout, requeued.stderr
    assert ids_listed(conveyor(redis_url, "list")) == [mul.id]


def test_show_prints_the_letter_whole(redis_url: str) -> None:
    # Given one dead letter
    (job,) = bury(redis_url, "add")
    # When shown: the body decoded (its name and args) and the whole traceback
    shown = conveyor(redis_url, "show", job.id)
    assert shown.returncode == 0, shown.stderr
    assert f"job id:    {job.id}" in shown.stdout and "job:       add" in shown.stdout
    assert '"name": "add"' in shown.stdout and '"args": [' in shown.stdout
    assert "Traceback (most recent call last):\nValueError: add 0" in shown.stdout
    # And an id that is not there exits 1
    missing = conveyor(redis_url, "show", "nope-1")
    assert missing.returncode == 1 and "nope-1" in missing.stderr


def test_purge_asks_first_unless_yes(redis_url: str) -> None:
    # Given dead letters of add, mul, add
    _, mul, _ = bury(redis_url, "add", "mul", "add")
    # When the purge is refused at the prompt: exit 1, nothing dropped
    refused = conveyor(redis_url, "purge", "--job", "add", answer="n\n")
    assert refused.returncode == 1 and "Drop 2 dead letter(s)" in refused.stderr
    assert len(ids_listed(conveyor(redis_url, "list"))) == 3
    # When it is confirmed: the add letters go
    agreed = conveyor(redis_url, "purge", "--job", "add", answer="y\n")
    assert agreed.returncode == 0 and "purged 2 dead letter(s)" in agreed.stdout, agreed.stderr
    assert ids_listed(conveyor(redis_url, "list")) == [mul.id]
    # When purged with --yes: no prompt (stdin closed), the rest goes
    forced = conveyor(redis_url, "purge", "--yes", answer="")
    assert forced.returncode == 0 and "purged 1 dead letter(s)" in forced.stdout, forced.stderr
    assert "Drop" not in forced.stderr
    assert ids_listed(conveyor(redis_url, "list")) == []


def test_dead_letters_stays_an_alias_of_dead(redis_url: str) -> None:
    (job,) = bury(redis_url, "add")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    old = subprocess.run(
        [sys.executable, "-m", "consumer", "dead-letters", "show", job.id, "--queue", "mail",
         "--url", redis_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert old.returncode == 0 and job.id in old.stdout, old.stderr
