"""``conveyor status`` with real processes: two ``conveyor worker --group g`` supervisors on the
session's redis-server; its ``--json`` agrees with /proc, a SIGKILLed supervisor shows as lost,
the table carries the numbers, ``--watch`` redraws until SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producer import Producer
from services import exitcodes
from services.backends.redis.queue import RedisQueue
from services.fleet_view import LOST_NOTE
from services.protocol import FleetControl
from tests.redis_fixtures import MakeQueue
from tests.test_fleet_processes import GROUP, conveyor, workers
from tests.test_http_fixtures import TOKEN, ServeProcess
from tests.test_redis_system import ROOT, WorkerProcess, launch, wait_for

__all__ = ["launch"]  # a fixture

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def queue(make_queue: MakeQueue) -> RedisQueue:
    return make_queue()


def status(url: str) -> dict[str, Any]:
    done = conveyor(url, "status", "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def agrees(url: str, *supervisors: WorkerProcess) -> Callable[[], bool]:
    """True when status lists exactly these live supervisors with their /proc worker counts."""

    def check() -> bool:
        view = status(url)
        alive = {s.pid: len(s.worker_pids()) for s in supervisors}
        listed = {r["pid"]: r["processes_alive"] for r in view["supervisors"] if not r["lost"]}
        [group] = [g for g in view["groups"] if g["name"] == "g"] or [{"alive": -1}]
        return listed == alive and group["alive"] == sum(alive.values())

    return check


def test_status_json_agrees_with_the_processes_and_shows_a_killed_one_lost(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue
) -> None:
    # Given two supervisors of group g scaled to 3 processes in all
    a, b = launch(*GROUP, "--lease", "1"), launch(*GROUP, "--lease", "1")
    a.wait_workers(1)
    b.wait_workers(1)
    assert conveyor(redis_url, "scale", "g=3").returncode == 0
    wait_for("3 worker processes", lambda: workers(a, b) == 3, 20)
    # Then status --json lists both pids with their /proc counts, and the group 3 of 3
    wait_for("status agrees with /proc", agrees(redis_url, a, b), 20)
    [group] = status(redis_url)["groups"]
    assert (group["name"], group["desired"], group["alive"]) == ("g", 3, 3)
    # When a is SIGKILLed
    a.proc.kill()
    a.proc.wait(timeout=10)

    # Then it is listed lost, with where its jobs went, and the alive count is b's
    def a_lost() -> bool:
        rows = {r["pid"]: r for r in status(redis_url)["supervisors"]}
        return bool(rows.get(a.pid, {}).get("note") == LOST_NOTE)

    wait_for("a listed lost", a_lost, 20)
    wait_for("status agrees with b alone", agrees(redis_url, b), 20)


def test_status_table_carries_the_numbers(redis_url: str, queue: RedisQueue) -> None:
    # Given 3 jobs waiting on mail, one of them dead-lettered, and mail paused
    producer = Producer(queue, name="mail")
    for n in range(4):
        producer.enqueue("add", n, 1)
    (delivery,) = queue.get(["mail"], timeout_s=5)
    queue.dead_letter(delivery, "ValueError: boom")
    assert conveyor(redis_url, "pause", "mail").returncode == 0
    # When status prints its tables
    done = conveyor(redis_url, "status")
    assert done.returncode == 0, done.stderr
    # Then mail's line has 3 waiting, 0 delayed, 0 in flight, 1 dead, an age, paused
    [line] = [row.split() for row in done.stdout.splitlines() if row.startswith("mail ")]
    assert line[:5] == ["mail", "3", "0", "0", "1"] and line[-1] == "yes", done.stdout
    assert line[6].endswith("s"), done.stdout
    assert done.stdout.splitlines()[0].split()[:3] == ["queue", "waiting", "delayed"]


def test_watch_redraws_until_sigint_then_exits_0(redis_url: str, queue: RedisQueue) -> None:
    # Given status --watch redrawing every 0.1 s
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    command = [sys.executable, "-m", "consumer", "status", "--watch", "--interval", "0.1"]
    with subprocess.Popen(
        [*command, "--url", redis_url], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        try:
            # When it has drawn twice (each draw starts with its header line)
            deadline, draws = time.monotonic() + 30, 0
            while draws < 2:
                assert time.monotonic() < deadline, "fewer than two draws in 30 s"
                line = proc.stdout.readline()
                assert line, f"status ended early with {proc.wait()}"
                draws += line.startswith("conveyor status ")
            proc.send_signal(signal.SIGINT)
            # Then Ctrl+C ends it with exit 0
            assert proc.wait(timeout=10) == exitcodes.OK
        finally:
            proc.kill()


def test_status_bad_input_exits_2_and_an_unreachable_backend_1(redis_url: str) -> None:
    assert conveyor(redis_url, "status", "--interval", "0").returncode == exitcodes.USAGE
    done = conveyor("redis://127.0.0.1:1/0", "status")
    assert done.returncode == exitcodes.ERROR and "unreachable" in done.stderr, done.stderr


def test_status_fleet_is_empty_at_first(redis_url: str, queue: RedisQueue) -> None:
    fleet: FleetControl = queue.fleet()
    assert fleet.supervisors() == []
    assert status(redis_url) == {"groups": [], "queues": [], "supervisors": []}


def _stable(view: dict[str, Any]) -> tuple[object, ...]:
    """The parts of a picture that do not move between two reads of a settled fleet."""
    return (
        sorted(
            (r["pid"], r["group"], r["processes_alive"], r["lost"]) for r in view["supervisors"]
        ),
        [(g["name"], g["desired"], g["alive"], g["version"]) for g in view["groups"]],
        [(q["name"], q["waiting"], q["paused"]) for q in view["queues"]],
    )


def test_the_http_view_agrees_with_status_and_put_scales(
    launch: Callable[..., WorkerProcess], redis_url: str, queue: RedisQueue, tmp_path: Path
) -> None:
    # Given two supervisors of group g and a conveyor serve on the same Redis
    a, b = launch(*GROUP), launch(*GROUP)
    a.wait_workers(1)
    b.wait_workers(1)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    serve = ServeProcess(redis_url, tmp_path / "serve.log", ["--token-file", str(token_file)])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        serve.wait_ready()
        # When the group is scaled to 3 over HTTP
        code, group = serve.call("PUT", "/v1/groups/g", {"processes": 3}, auth)
        assert code == 200 and (group["desired"], group["set_by"]) == (3, "conveyor serve")
        # Then 3 processes run, and status --json, GET /v1/fleet and /proc agree
        wait_for("3 worker processes", lambda: workers(a, b) == 3, 20)
        wait_for("status agrees with /proc", agrees(redis_url, a, b), 20)

        def same() -> bool:
            code, over_http = serve.call("GET", "/v1/fleet", headers=auth)
            return code == 200 and _stable(over_http) == _stable(status(redis_url))

        wait_for("the HTTP view equal to status --json", same, 20)
        code, group = serve.call("GET", "/v1/groups/g", headers=auth)
        assert code == 200 and group["alive"] == 3
        assert sorted(s["pid"] for s in group["supervisors"]) == sorted([a.pid, b.pid])
        # And bad totals are 422s, an unknown group a 404, nothing changed
        bounds = {"minimum": 4, "maximum": 2, "backlog_per_worker": 1}
        assert serve.call("PUT", "/v1/groups/g", {"processes": -1}, auth)[0] == 422
        assert (
            serve.call("PUT", "/v1/groups/g", {"processes": 3, "autoscale": bounds}, auth)[0] == 422
        )
        assert serve.call("GET", "/v1/groups/nope", headers=auth)[0] == 404
        assert serve.call("GET", "/v1/groups/g", headers=auth)[1]["version"] == 1
    finally:
        serve.kill()
