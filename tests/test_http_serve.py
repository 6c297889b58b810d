"""``conveyor serve`` as a real process: the refusals that exit 2, readiness as Redis dies and
comes back, a SIGTERM that lets a request in flight finish, tokens kept out of the log, jobs
posted over HTTP and run by a real ``conveyor worker``, and the documented Redis ACL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from services.backends import with_password
from services.protocol import QueueCounts
from tests.helpers_metrics import scrape
from tests.helpers_process import ROOT
from tests.redis_fixtures import (
    MakeQueue,
    RedisServer,
    documented_acl,
    find_redis_server,
    setinfo_rules,
)
from tests.test_http_fixtures import TOKEN, StartServe, serve, wait_for
from tests.test_redis_system import WorkerProcess

pytestmark = [pytest.mark.redis]
__all__ = ["serve"]  # the fixture, imported for pytest


def conveyor_serve(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``conveyor serve`` run to its end (for the refusals, which exit at once)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer", "serve", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- refusals ----------------------------------------------------------------------------------
def test_a_non_loopback_host_without_a_token_is_refused(redis_url: str) -> None:
    done = conveyor_serve("--url", redis_url, "--host", "0.0.0.0", "--port", "1")
    assert done.returncode == 2
    assert "--token-file" in done.stderr
    assert "--no-auth" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--url", "memory://"], "redis://"),
        (["--no-auth", "--url", "redis://127.0.0.1:1/0"], "contradict"),
        (["--url", "redis://127.0.0.1:1/0?socket_timeout=9"], "socket_timeout"),
    ],
)
def test_configurations_that_cannot_work_exit_2(args: list[str], words: str) -> None:
    done = conveyor_serve(*args, env={"CONVEYOR_TOKEN": TOKEN} if "--no-auth" in args else None)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_redis_password_exits_2_before_serving(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).config_set("requirepass", "right-one")
    try:
        done = conveyor_serve("--url", redis_url, env={"CONVEYOR_REDIS_PASSWORD": "wrong"})
    finally:
        client = redis.Redis.from_url(with_password(redis_url, "right-one"))
        client.config_set("requirepass", "")
        client.close()
    assert done.returncode == 2
    assert "refused the credentials" in done.stderr


# -- readiness ---------------------------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with AOF (it survives a SIGKILL and restart)."""
    binary = find_redis_server()
    assert binary is not None, "no redis-server binary"
    server = RedisServer(binary, tmp_path / "data")
    (tmp_path / "data").mkdir()
    server.start(persistent=True)
    yield server
    server.kill()


def test_readyz_follows_redis_down_and_back(own_redis: RedisServer, serve: StartServe) -> None:
    service = serve(url=own_redis.url)
    assert service.call("GET", "/readyz")[0] == 200
    # When Redis dies
    own_redis.kill()
    # Then the service is alive but not ready, and a submission is a 503 to retry
    wait_for("readyz 503", lambda: service.call("GET", "/readyz")[0] == 503)
    status, body = service.call("POST", "/v1/queues/q/jobs", {"job": "echo"})
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert service.call("GET", "/healthz")[0] == 200
    # When it comes back with its data (AOF)
    own_redis.start(persistent=True)
    # Then the service is ready again, and takes jobs
    wait_for("readyz 200", lambda: service.call("GET", "/readyz")[0] == 200)
    assert service.call("POST", "/v1/queues/q/jobs", {"job": "echo"})[0] == 202


def test_a_redis_that_restarted_empty_keeps_readyz_503(
    own_redis: RedisServer, serve: StartServe
) -> None:
    service = serve(url=own_redis.url)
    assert service.call("GET", "/readyz")[0] == 200
    # When Redis comes back empty (no AOF this time: every job it held is lost)
    own_redis.kill()
    own_redis.wipe_data()
    own_redis.start(persistent=True)
    # Then readiness says so, and keeps saying so
    wait_for("readyz to notice", lambda: service.call("GET", "/readyz")[0] == 503)
    status, body = service.call("GET", "/readyz")
    assert status == 503
    assert "restarted EMPTY" in body["error"]["message"]


# -- graceful stop -----------------------------------------------------------------------------
def test_sigterm_lets_a_request_in_flight_finish_then_exits_0(
    redis_url: str, serve: StartServe, make_queue: MakeQueue
) -> None:
    # Given a bounded queue that is full, and a submission waiting for room
    service = serve("--max-depth", "1", "--put-timeout", "20")
    assert service.call("POST", "/v1/queues/q/jobs", {"job": "echo", "job_id": "first"})[0] == 202
    admin = redis.Redis.from_url(redis_url)
    calls_before = _evalsha_calls(admin)
    answers: list[tuple[int, Any]] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            service.call("POST", "/v1/queues/q/jobs", {"job": "echo", "job_id": "second"}, None, 30)
        )
    )
    waiting.start()
    wait_for("the second put to retry", lambda: _evalsha_calls(admin) >= calls_before + 3)
    # When the service gets SIGTERM
    service.proc.send_signal(15)
    # Then it stops accepting connections at once, with the request still in flight
    wait_for("new connections refused", lambda: service.call("GET", "/healthz")[0] == 0)
    assert waiting.is_alive()
    # And when room is made, the request in flight completes, and the service exits 0
    make_queue().get(["q"], timeout_s=1)
    waiting.join(timeout=20)
    assert answers == [(202, {"job_id": "second", "queue": "q", "new": True})]
    assert service.wait_exit() == 0, service.log()  # (a second SIGTERM now would kill it)
    assert "stopped by SIGTERM" in service.log()
    admin.close()


def _evalsha_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


# -- tokens ------------------------------------------------------------------------------------
def test_tokens_never_appear_in_the_log(serve: StartServe, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    service = serve("--token-file", str(token_file))
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer wrong-token-5a7c"}
    assert service.call("POST", "/v1/queues/q/jobs", {"job": "echo"}, right)[0] == 202
    assert service.call("POST", "/v1/queues/q/jobs", {"job": "echo"}, wrong)[0] == 401
    assert service.call("GET", "/v1/queues")[0] == 401
    assert service.stop() == 0
    log = service.log()
    assert '"POST /v1/queues/q/jobs HTTP/1.1" 202' in log  # the access log is on
    assert TOKEN not in log
    assert "wrong-token-5a7c" not in log


# -- a real worker runs what HTTP put --------------------------------------------------------
def test_jobs_posted_over_http_are_run_by_a_worker(
    redis_url: str, serve: StartServe, tmp_path: Path
) -> None:
    service = serve()
    worker = WorkerProcess(
        redis_url, tmp_path / "worker.log", ["-c", "2"], jobs="tests.jobs:registry"
    )
    try:
        # When jobs are posted one by one and in a batch
        single = service.call("POST", "/v1/queues/default/jobs", {"job": "add", "args": [2, 3]})
        batch = service.call(
            "POST",
            "/v1/queues/default/batches",
            {"jobs": [{"job": "add", "args": [n, n]} for n in range(10)]},
        )
        ids = [single[1]["job_id"], *(j["job_id"] for j in batch[1]["jobs"])]

        # Then each ends done, with its result readable over HTTP
        def all_done() -> bool:
            return all(service.call("GET", f"/v1/jobs/{i}")[1]["status"] == "done" for i in ids)

        wait_for("every job done", all_done, 60)
        results = [service.call("GET", f"/v1/jobs/{i}")[1]["result"] for i in ids]
        assert results == [5, *(2 * n for n in range(10))]
        queues = service.call("GET", "/v1/queues")[1]["queues"]
        assert queues == [
            {"name": "default", "waiting": 0, "delayed": 0, "in_flight": 0, "done": 11, "dead": 0}
        ]
        # And the service's /metrics counted the 11 jobs it stored, and reads depth from Redis
        metrics = scrape(service.base + "/metrics")
        assert metrics.total("conveyor_jobs_enqueued_total", queue="default", job="add") == 11
        assert metrics.total("conveyor_queue_depth", queue="default", state="waiting") == 0
        assert metrics.total("conveyor_backend_up") == 1
        # A request repeated with the same id stores nothing, and is not counted again
        again = {"job": "add", "args": [2, 3], "job_id": single[1]["job_id"]}
        assert service.call("POST", "/v1/queues/default/jobs", again)[1]["new"] is False
        metrics = scrape(service.base + "/metrics")
        assert metrics.total("conveyor_jobs_enqueued_total", queue="default", job="add") == 11
        worker.send(15)
        assert worker.wait_exit(30) == 0
    finally:
        worker.cleanup()
    assert service.stop() == 0


# -- the documented ACL ------------------------------------------------------------------------
def test_the_service_needs_nothing_beyond_the_documented_acl(
    redis_url: str, serve: StartServe, make_queue: MakeQueue, tmp_path: Path
) -> None:
    # Given a Redis user made from the ACL line the Redis backend documents
    admin = redis.Redis.from_url(redis_url)
    name, rules = documented_acl("acl-serve-pw")
    rules += setinfo_rules(admin)  # the docstring's note for Redis 6.2 and 7.2 and later
    admin.execute_command("ACL", "SETUSER", name, *rules)  # type: ignore[no-untyped-call]
    admin.execute_command("ACL", "LOG", "RESET")  # type: ignore[no-untyped-call]
    parts = urlsplit(redis_url)
    password_file = tmp_path / "password"
    password_file.write_text("acl-serve-pw")
    user_url = f"redis://{name}@{parts.hostname}:{parts.port}{parts.path}"
    service = serve("--password-file", str(password_file), url=user_url)
    # When every route is used
    call = service.call
    assert call("POST", "/v1/queues/q/jobs", {"job": "echo", "job_id": "j1"})[0] == 202
    assert call("POST", "/v1/queues/q/jobs", {"job": "echo", "job_id": "j1"})[1]["new"] is False
    assert call("POST", "/v1/queues/q/batches", {"jobs": [{"job": "echo"}] * 3})[0] == 202
    assert (
        call("POST", "/v1/queues/q/jobs", {"job": "echo", "job_id": "j2", "delay_s": 60})[0] == 202
    )
    assert call("GET", "/v1/jobs/j1")[1]["status"] == "queued"
    assert call("DELETE", "/v1/jobs/j1")[0] == 200
    assert call("DELETE", "/v1/jobs/j2")[0] == 200
    queue = make_queue()
    for delivery in queue.get(["q"], max_count=10, timeout_s=1):
        queue.dead_letter(delivery, "boom")
    assert len(call("GET", "/v1/queues/q/dead-letters")[1]["dead_letters"]) == 3
    assert call("POST", "/v1/queues/q/dead-letters/requeue", {})[1] == {"requeued": 3}
    for delivery in queue.get(["q"], max_count=10, timeout_s=1):
        queue.dead_letter(delivery, "boom again")
    assert call("DELETE", "/v1/queues/q/dead-letters")[1] == {"deleted": 3}
    assert call("GET", "/v1/queues")[0] == 200
    assert call("GET", "/readyz")[0] == 200
    # Then the counts add up, and Redis denied the service nothing
    assert queue.counts("q") == QueueCounts(dead=8)  # 2 cancelled, 3 dead twice
    assert service.stop() == 0
    denied = admin.execute_command("ACL", "LOG")  # type: ignore[no-untyped-call]
    admin.close()
    assert denied == [], f"commands denied under the documented ACL: {denied}"
