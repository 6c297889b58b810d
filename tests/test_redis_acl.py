"""The least-privilege ACL that the Redis backend documents is the one tested here.

The ``ACL SETUSER`` line is parsed out of ``services.backends.redis.queue``'s docstring (by
``tests.redis_fixtures.documented_acl``, which ``test_redis_faults`` uses too), so a command the
backend starts using without adding it to the documented line fails this test.
A restricted user made from that line runs a real ``conveyor worker`` through faults (its
connections killed mid-wait, which takes the lost-reply recovery path), retries, a dead
letter, a delayed job, status reads and ``conveyor dead-letters list|requeue``; afterwards
``ACL LOG`` must be empty: not one command was denied.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from producer import Producer
from services.backends import with_password
from services.backends.redis import queue as redis_queue
from services.backends.redis.queue import RedisQueue
from services.errors import BackendUnavailableError
from services.protocol import JobStatus
from services.settings import QueueSettings
from tests.jobs import read_ledger
from tests.redis_fixtures import documented_acl, setinfo_rules
from tests.test_redis_system import WorkerProcess, wait_for

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "acl-Test-pw"
WORKER_ARGS = ["--concurrency", "2", "--lease", "2", "--retry-backoff", "0.05"]


def test_the_documented_acl_has_the_commands_the_lost_reply_recovery_needs() -> None:
    assert "+hkeys" in documented_acl(PASSWORD)[1]


@pytest.fixture
def restricted(redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    """(the URL of a user made from the documented line, without its password; an admin)."""
    admin = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    name, rules = documented_acl(PASSWORD)
    if "+client|setinfo" in (redis_queue.__doc__ or ""):
        rules += setinfo_rules(admin)  # the docstring's note for Redis 6.2 and 7.2 and later
    acl(admin, "SETUSER", name, *rules)
    acl(admin, "LOG", "RESET")
    parts = urlsplit(redis_url)
    yield f"redis://{name}@{parts.hostname}:{parts.port}{parts.path}", admin
    admin.close()


def acl(admin: redis.Redis, *args: str) -> Any:
    return admin.execute_command("ACL", *args)  # type: ignore[no-untyped-call]


def retried(call: Callable[[], Any]) -> Any:
    """``call()``, again if the test's own connection was among those the test killed."""
    for _ in range(5):
        try:
            return call()
        except BackendUnavailableError:
            continue
    return call()


def settled(queue: RedisQueue, job_ids: list[str], want: dict[str, str]) -> bool:
    statuses: list[JobStatus | None] = [retried(partial(queue.status, j)) for j in job_ids]
    return all(s is not None and s.status == want.get(s.job_id, "done") for s in statuses)


def conveyor(*args: str, password_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args, "--password-file", str(password_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kill_blocked_connections(admin: redis.Redis, user: str) -> int:
    """CLIENT KILL every connection of ``user`` waiting in BLPOP (the workers' doorbells)."""
    victims = [c for c in admin.client_list() if c["user"] == user and c["cmd"] == "blpop"]
    for client in victims:
        admin.client_kill_filter(_id=client["id"])
    return len(victims)


@pytest.mark.timeout(240)
def test_a_worker_under_the_documented_acl_is_never_denied_a_command(
    restricted: tuple[str, redis.Redis], tmp_path: Path
) -> None:
    user_url, admin = restricted
    user = urlsplit(user_url).username or ""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    ledger = tmp_path / "ledger"
    # Given a worker and the test's own queue client, both as the restricted user
    worker = WorkerProcess(
        user_url,
        tmp_path / "worker.log",
        ["--password-file", str(password_file), *WORKER_ARGS],
        jobs="tests.jobs:registry",
    )
    queue = RedisQueue(with_password(user_url, PASSWORD), QueueSettings())
    try:
        worker.wait_workers(2)
        producer = Producer(queue)
        # When its doorbell waits are killed three times (each time the worker must hand back
        # jobs a lost FETCH reply may have left: HKEYS + NACK)
        for _ in range(3):
            wait_for("workers waiting", lambda: kill_blocked_connections(admin, user) > 0, 30)
        # And it runs ledger jobs, a job that fails, retries and is dead-lettered, and a
        # delayed job enqueued by `conveyor enqueue`
        ids = [producer.enqueue("ledger", str(ledger), f"k{i}").id for i in range(20)]
        failing = producer.enqueue("fail", "boom").id
        delayed = conveyor(
            "enqueue", "add", "1", "2", "--url", user_url, "--delay", "0.5",
            password_file=password_file,
        )  # fmt: skip
        assert delayed.returncode == 0, delayed.stderr
        all_ids = [*ids, failing, delayed.stdout.strip()]
        kill_blocked_connections(admin, user)
        want = {failing: "dead"}
        wait_for("every job settled", lambda: settled(queue, all_ids, want), 90, poll_s=0.1)
        # And the dead letter is listed and requeued from the command line
        listed = conveyor("dead-letters", "list", "--url", user_url, password_file=password_file)
        assert listed.returncode == 0 and failing in listed.stdout, listed.stderr
        requeued = conveyor(
            "dead-letters", "requeue", failing, "--url", user_url, password_file=password_file
        )
        assert requeued.returncode == 0 and "requeued 1 job(s)" in requeued.stdout
        finished = retried(lambda: queue.wait_finished(failing, timeout_s=60))
        assert finished is not None and finished.status == "dead"
        worker.send(15)
        assert worker.wait_exit(60) == 0, worker.tail()
    finally:
        queue.close()
        worker.cleanup()
        print(f"----- worker log tail -----\n{worker.tail(100)}")  # shown when the test fails
    # Then every ledger job ran, and Redis denied the restricted user nothing
    assert {line.split()[1] for line in read_ledger(ledger) if line.startswith("end")} == {
        f"k{i}" for i in range(20)
    }
    denied = acl(admin, "LOG")
    assert denied == [], f"commands denied under the documented ACL: {denied}\n{worker.tail()}"


def test_every_command_the_lua_scripts_call_is_in_the_documented_acl() -> None:
    # Given the commands the scripts call (a cheap guard: the system test above needs a run
    # that reaches every script path to notice a missing one)
    from services.backends.redis import scripts as redis_scripts

    source = Path(redis_scripts.__file__).read_text()
    called = {name.lower() for name in re.findall(r"redis\.call\('([A-Za-z]+)'", source)}
    # When the documented ACL line is read
    _, rules = documented_acl("x")
    allowed = {rule[1:] for rule in rules if rule.startswith("+")}
    # Then it allows each of them
    assert called, "no redis.call found: the scripts moved?"
    assert called <= allowed, f"missing from the ACL line: {sorted(called - allowed)}"
