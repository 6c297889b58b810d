"""The CLI against a real Redis: passwords kept out of command lines and logs, the same
connection options on every command, and a worker that fails fast on bad credentials but
waits for a Redis that is not up yet."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from producer import Producer
from services.backends.redis.queue import RedisQueue
from services.settings import QueueSettings
from tests.redis_fixtures import RedisServer, find_redis_server

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-Pa55"


@pytest.fixture
def user_url(redis_url: str) -> Iterator[str]:
    """A URL for an ACL user whose password is NOT in it."""
    client = redis.Redis.from_url(redis_url)
    client.acl_setuser(
        "alice", enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all"]
    )
    parts = urlsplit(redis_url)
    yield f"redis://alice@{parts.hostname}:{parts.port}{parts.path}"
    client.acl_deluser("alice")
    client.close()


def enqueue(
    url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "enqueue", "add", "1", "2", "--url", url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_password_can_come_from_a_file(user_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    result = enqueue(user_url, "--password-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 32  # the job id


def test_the_password_can_come_from_the_environment(user_url: str) -> None:
    env = {**os.environ, "CONVEYOR_REDIS_PASSWORD": SECRET}
    result = enqueue(user_url, env=env)
    assert result.returncode == 0, result.stderr


def test_a_wrong_password_is_a_clear_error_that_does_not_echo_it(user_url: str) -> None:
    env = {**os.environ, "CONVEYOR_REDIS_PASSWORD": "wrong-" + SECRET}
    result = enqueue(user_url, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:")
    assert SECRET not in result.stderr + result.stdout


# -- the worker at start: configuration errors exit 2, an unreachable Redis is waited for -----

WORKER = ["worker", "--jobs", "tests.jobs:registry", "--concurrency", "1"]


def conveyor(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m consumer ARGS`` with no CONVEYOR_* variables but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**clean, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A second redis-server of its own that requires a password (``requirepass``)."""
    binary = find_redis_server()
    assert binary is not None
    server = RedisServer(binary, tmp_path)
    server.start()  # then the password: the fixture's readiness PING has none
    server.cli("CONFIG", "SET", "requirepass", SECRET)
    yield server
    server.kill()


def test_a_worker_with_a_wrong_password_exits_2_at_once(password_server: RedisServer) -> None:
    # Given a Redis with requirepass, When a worker starts with the wrong password
    env = {"CONVEYOR_REDIS_PASSWORD": "wrong-" + SECRET}
    result = conveyor(*WORKER, "--url", password_server.url, env=env)
    # Then it exits 2 with one clear line (before: its children restarted forever)
    assert_one_line_error(result, "refused the credentials", "cannot check the Redis server")
    assert SECRET not in result.stderr


def test_run_on_a_redis_that_refuses_the_password_exits_2(password_server: RedisServer) -> None:
    env = {"CONVEYOR_REDIS_PASSWORD": "wrong-" + SECRET}
    result = conveyor("run", "--url", password_server.url, "--count", "1", env=env)
    assert_one_line_error(result, "refused the credentials")


def test_a_worker_with_no_password_for_a_protected_redis_exits_2(
    password_server: RedisServer,
) -> None:
    result = conveyor(*WORKER, "--url", password_server.url)
    assert_one_line_error(result, "Redis")


def test_a_worker_whose_acl_user_lacks_a_command_exits_2(redis_url: str) -> None:
    # Given an ACL user that may do everything but INFO
    client = redis.Redis.from_url(redis_url)
    client.acl_setuser(
        "bob", enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all", "-info"]
    )
    parts = urlsplit(redis_url)
    url = f"redis://bob@{parts.hostname}:{parts.port}{parts.path}"
    # When a worker starts as that user
    result = conveyor(*WORKER, "--url", url, env={"CONVEYOR_REDIS_PASSWORD": SECRET})
    # Then it exits 2 naming the missing permission, in words
    assert_one_line_error(result, "lacks a permission", "info")
    assert "check_server" not in result.stderr


def test_a_worker_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    # Given no Redis on the port yet, When a worker starts
    binary = find_redis_server()
    assert binary is not None
    server = RedisServer(binary, tmp_path)
    log_path = tmp_path / "worker.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "consumer", *WORKER, "--url", server.url],
            cwd=ROOT,
            env=clean,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # Then it logs that Redis is unreachable and keeps retrying
        poll(lambda: "retrying in" in log_path.read_text(), "the retry log line")
        assert worker.poll() is None
        # And once Redis starts it consumes jobs
        server.start()
        queue = RedisQueue(server.url, QueueSettings())
        job = Producer(queue).enqueue("add", 2, 3)
        status = queue.wait_finished(job.id, timeout_s=60)
        queue.close()
        assert status is not None and status.status == "done", log_path.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        server.kill()


def test_a_worker_waiting_for_redis_stops_on_sigterm(tmp_path: Path) -> None:
    binary = find_redis_server()
    assert binary is not None
    url = RedisServer(binary, tmp_path).url  # never started
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "consumer", *WORKER, "--url", url],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        poll(lambda: "retrying in" in log_path.read_text(), "the retry log line")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert "Traceback" not in log_path.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def poll(done: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- every command that opens a queue takes the same connection options ----------------------


@pytest.mark.parametrize(
    "command",
    [["dead-letters", "list"], ["dead-letters", "requeue"], ["enqueue", "add", "1", "2"]],
    ids=["list", "requeue", "enqueue"],
)
def test_every_queue_command_takes_the_password_from_a_file_or_the_environment(
    user_url: str, tmp_path: Path, command: list[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    by_file = conveyor(*command, "--url", user_url, "--password-file", str(secret))
    assert by_file.returncode == 0, by_file.stderr
    by_env = conveyor(*command, "--url", user_url, env={"CONVEYOR_REDIS_PASSWORD": SECRET})
    assert by_env.returncode == 0, by_env.stderr
    wrong = conveyor(*command, "--url", user_url, env={"CONVEYOR_REDIS_PASSWORD": "nope"})
    assert_one_line_error(wrong, "refused the credentials")


def test_dead_letters_show_readable_times_and_requeue_names_unknown_ids(redis_url: str) -> None:
    # Given one dead letter on queue "mail" (chosen by CONVEYOR_QUEUE)
    queue = RedisQueue(redis_url, QueueSettings())
    job = Producer(queue, name="mail").enqueue("add", 1, 2)
    (delivery,) = queue.get(["mail"], timeout_s=5)
    queue.dead_letter(delivery, "Traceback ...\nValueError: boom")
    queue.close()
    env = {"CONVEYOR_QUEUE": "mail", "CONVEYOR_URL": redis_url}
    # When it is listed: the id, a UTC date and time, and the error line
    listed = conveyor("dead-letters", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.fullmatch(
        rf"{job.id}  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC  ValueError: boom\n", listed.stdout
    ), listed.stdout
    # When only unknown ids are requeued: exit 1, and they are named
    unknown = conveyor("dead-letters", "requeue", "nope-1", env=env)
    assert unknown.returncode == 1
    assert "nope-1" in unknown.stderr and "requeued 0 job(s)" in unknown.stdout
    # When a known and an unknown id are requeued: exit 0, the unknown one named
    mixed = conveyor("dead-letters", "requeue", job.id, "nope-2", env=env)
    assert mixed.returncode == 0, mixed.stderr
    assert "requeued 1 job(s)" in mixed.stdout and "nope-2" in mixed.stderr


def test_a_password_changed_under_a_running_worker_stops_it_with_exit_2(
    password_server: RedisServer,
) -> None:
    # Given a worker running with the right password
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
        "CONVEYOR_REDIS_PASSWORD": SECRET,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "consumer", *WORKER, "--url", password_server.url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        admin = redis.Redis(port=password_server.port, password=SECRET)
        deadline = time.monotonic() + 60
        while not any(c.get("cmd") == "blpop" for c in admin.client_list()):
            assert time.monotonic() < deadline, "the worker never waited for jobs"
            time.sleep(0.05)
        # When the password changes and its connections are cut
        admin.config_set("requirepass", "rotated-" + SECRET)
        admin = redis.Redis(port=password_server.port, password="rotated-" + SECRET)
        admin.client_kill_filter(_type="normal", skipme=True)
        # Then it stops by itself with exit code 2 instead of restarting children forever
        _, stderr = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 2, stderr
    assert "refused the credentials" in stderr
    assert SECRET not in stderr


def test_enqueue_with_a_job_id_twice_stores_the_job_once(redis_url: str) -> None:
    # Given a job enqueued from the shell with an id of the caller's
    first = conveyor("enqueue", "add", "1", "2", "--url", redis_url, "--job-id", "order-42")
    # When the same command is run again (a script retrying after a timeout)
    again = conveyor("enqueue", "add", "1", "2", "--url", redis_url, "--job-id", "order-42")
    # Then both print the id, and the queue holds the job once
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert first.stdout.strip() == again.stdout.strip() == "order-42"
    queue = RedisQueue(redis_url, QueueSettings())
    try:
        assert queue.depth("default") == 1
        status = queue.status("order-42")
        assert status is not None and status.status == "queued"
    finally:
        queue.close()


def test_enqueue_refuses_a_bad_job_id_in_one_line(redis_url: str) -> None:
    result = conveyor("enqueue", "add", "1", "2", "--url", redis_url, "--job-id", "a b")
    assert_one_line_error(result, "invalid job id")
