"""Connections to Redis Cluster and Sentinel (``redis/urls.py``, ``redis/topology.py``,
``redis/connection.py``): the URL forms, and what the backend needs from redis-py's clients,
on real topologies started by ``tests.redis_topology_fixtures`` (scripts routed by their first
key, pipelines mixing scripts and commands, BLPOP then a script on one connection, errors
for people, and a master SIGKILLed: a call fails as unavailable, then works after the
promotion)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import redis

from services.backends import redact_url, scheme_of, with_password
from services.backends.redis import urls
from services.backends.redis.connection import (
    AsyncClient,
    Client,
    disconnect,
    disconnect_async,
    guarded,
    make_async_client,
    make_client,
)
from services.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from tests.redis_topology_fixtures import ClusterOfSix, SentinelGroup

pytest_plugins = ["tests.redis_topology_fixtures"]
"""Registered as a plugin, never imported here first (pytest must rewrite its asserts)."""

DEADLINE_S = 60.0
"""Longest wait for a call to reach a promoted replica (as the fixtures' own deadline)."""

PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[2])
return {redis.call('LLEN', KEYS[1]), redis.call('INCR', ARGV[1] .. 'seq')}
"""
"""A queue-script-like call: its KEYS, plus a key of the same tag it builds from ARGV[1]."""


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Opens clients with ``make_client``; disconnects them after the test."""
    made: list[Client] = []

    def make(url: str, timeout_s: float = 2.0) -> Client:
        made.append(make_client(url, timeout_s=timeout_s))
        return made[-1]

    yield make
    for client in made:
        disconnect(client)


# --- URL forms (no server) ---


def test_cluster_url_lists_startup_nodes_with_credentials() -> None:
    parsed = urls.parse("rediss+cluster://app:s%40cret@a:7000,b,[::1]:7002/0?client_name=w")
    assert parsed is not None
    assert (parsed.kind, parsed.tls, parsed.db) == ("cluster", True, 0)
    assert parsed.hosts == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert (parsed.username, parsed.password) == ("app", "s@cret")
    assert parsed.options == {"client_name": "w"}


def test_sentinel_url_names_service_db_and_sentinel_credentials() -> None:
    parsed = urls.parse("redis+sentinel://:pw@s1,s2:26380/conveyor/3?sentinel_password=sp")
    assert parsed is not None
    assert (parsed.kind, parsed.service, parsed.db) == ("sentinel", "conveyor", 3)
    assert parsed.hosts == (("s1", 26379), ("s2", 26380))
    assert (parsed.password, parsed.sentinel_password) == ("pw", "sp")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://a:7000/1", "one database"),
        ("redis+cluster://a:7000?db=2", "one database"),
        ("redis+cluster://a:7000,,b:7001", "host[:port]"),
        ("redis+cluster://a:99999", "host[:port]"),
        ("redis+cluster://a:7000?socket_timeout=60", "socket_timeout"),
        ("redis+cluster://a:7000?ssl_ca_certs=/ca.pem", "rediss+cluster://"),
        ("redis+sentinel://s1:26379", "name the Sentinel service"),
        ("redis+sentinel://s1:26379/svc/x", "must be a number"),
        ("redis+sentinel://s1:26379/svc/1?db=2", "two databases"),
        ("redis://h:6379/0?sentinel_password=x", "sentinel_password"),
    ],
)
def test_malformed_topology_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_client(url, timeout_s=1.0)


def test_new_schemes_route_to_the_redis_backend() -> None:
    for scheme in ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"):
        assert scheme_of(f"{scheme}://h:1/x") == scheme


def test_passwords_of_multi_host_urls_are_redacted_and_set() -> None:
    url = with_password("redis+sentinel://s1:26379,s2:26380/svc?sentinel_password=sp", "p@ss")
    assert url == "redis+sentinel://:p%40ss@s1:26379,s2:26380/svc?sentinel_password=sp"
    shown = redact_url(url)
    assert shown == "redis+sentinel://:***@s1:26379,s2:26380/svc?sentinel_password=***"
    assert redact_url("redis+cluster://u:x@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"


def test_nothing_connects_until_the_first_command() -> None:
    # Given a cluster URL and a Sentinel URL where nobody listens (port 1 is never served)
    for url in ("redis+cluster://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/svc"):
        # When a client is made and a script registered: no error
        client = make_client(url, timeout_s=1.0)
        client.register_script(PUSH)
        # Then the first command fails as unavailable, in words for people
        with pytest.raises(BackendUnavailableError, match="cannot enqueue"), guarded("put", url):
            client.get("cv:{q}:x")
        # And telling a cluster client from the others, or closing it, does not connect
        assert hasattr(client, "connection_pool") == url.startswith("redis+sentinel")
        disconnect(client)


# --- Redis Cluster ---


def test_scripts_run_on_the_node_of_their_first_key(
    redis_cluster: ClusterOfSix, redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    # Given two queues on different masters and a script the cluster has never seen
    client = clients(redis_cluster_url)
    a, b = "cv:{a}:", "cv:{b}:"
    assert redis_cluster.master_of(a) != redis_cluster.master_of(b)
    script = client.register_script(PUSH)
    # When it runs with each queue's key (Script loads it where it is missing)
    first = script(keys=[a + "q"], args=[a, "x"])
    second = client.evalsha(script.sha, 1, b + "q", b, "y")
    # Then each call ran on its queue's node, building same-tag keys from ARGV
    assert (first, second) == ([1, 1], [1, 1])
    assert redis.Redis(port=redis_cluster.master_of(b)).get(b + "seq") == b"1"


def test_pipelines_mix_scripts_and_commands_across_nodes(
    redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    client = clients(redis_cluster_url)
    sha = client.register_script(PUSH).sha
    client.script_load(PUSH)
    pipe = client.pipeline(transaction=False)
    pipe.evalsha(sha, 1, "cv:{a}:q", "cv:{a}:", "1")
    pipe.llen("cv:{a}:q")
    pipe.evalsha(sha, 1, "cv:{b}:q", "cv:{b}:", "2")
    pipe.sadd("cv:{cv}:queues", "a", "b")
    pipe.evalsha("0" * 40, 1, "cv:{a}:q")
    replies = pipe.execute(raise_on_error=False)
    assert replies[:4] == [[1, 1], 1, [1, 1], 2]
    assert isinstance(replies[4], redis.exceptions.NoScriptError)


def test_blpop_then_a_script_run_in_order_on_one_connection(
    redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    # Given a consumer blocked on two bells of one queue, pipelined with a script behind
    client = clients(redis_cluster_url)
    blocking = clients(redis_cluster_url, timeout_s=10.0)
    sha = client.register_script("return redis.call('GET', KEYS[1])").sha
    client.script_load("return redis.call('GET', KEYS[1])")

    def ring() -> None:
        time.sleep(0.3)  # let the BLPOP block first; the test holds without it, less sharply
        client.set("cv:{a}:ready", "yes")
        client.rpush("cv:{a}:b2", "ding")

    ringer = threading.Thread(target=ring)
    ringer.start()
    pipe = blocking.pipeline(transaction=False)
    pipe.blpop(["cv:{a}:b", "cv:{a}:b2"], timeout=DEADLINE_S)
    pipe.evalsha(sha, 1, "cv:{a}:ready")
    # When the bell rings
    woke, seen = pipe.execute()
    ringer.join()
    # Then the script ran after the BLPOP returned: it sees what was written before the ring
    assert tuple(woke) == (b"cv:{a}:b2", b"ding")
    assert seen == b"yes"


def test_blmove_with_a_float_timeout(
    redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    client = clients(redis_cluster_url, timeout_s=5.0)
    client.rpush("cv:{a}:j:1", "done")
    moved = client.execute_command("BLMOVE", "cv:{a}:j:1", "cv:{a}:j:1", "LEFT", "LEFT", 0.05)  # type: ignore[no-untyped-call]
    empty = client.execute_command("BLMOVE", "cv:{a}:j:2", "cv:{a}:j:2", "LEFT", "LEFT", 0.05)  # type: ignore[no-untyped-call]
    assert (moved, empty) == (b"done", None)


def test_keys_of_several_slots_are_a_clear_error(
    redis_cluster: ClusterOfSix, redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    client = clients(redis_cluster_url)
    where = redact_url(redis_cluster_url)
    with pytest.raises(ConfigError, match="several hash slots"), guarded("put", where):
        client.mget("cv:{a}:x", "cv:{b}:x")
    # A script touching a key of another node than its KEYS' (built from ARGV) is refused
    # by Redis itself
    assert redis_cluster.master_of("cv:{a}:") != redis_cluster.master_of("cv:{b}:")
    with pytest.raises(ConfigError, match="several hash slots"), guarded("put", where):
        client.eval("return redis.call('GET', ARGV[1])", 1, "cv:{a}:q", "cv:{b}:q")


def test_a_one_server_url_on_a_cluster_node_says_to_use_the_cluster_form(
    redis_cluster: ClusterOfSix, redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    port = redis_cluster.master_of("cv:{a}:")
    other = next(
        k for k in ("cv:{b}:q", "cv:{c}:q", "cv:{d}:q") if redis_cluster.master_of(k) != port
    )
    client = clients(f"redis://127.0.0.1:{port}/0")
    with (
        pytest.raises(ConfigError, match=r"redis\+cluster://"),
        guarded("depth", f"redis://127.0.0.1:{port}/0"),
    ):
        client.llen(other)


def test_a_cluster_url_on_a_one_server_redis_says_to_use_redis_url(
    redis_url: str, clients: Callable[..., Client]
) -> None:
    url = "redis+cluster://" + urlsplit(redis_url).netloc
    with pytest.raises(ConfigError, match="not a Redis Cluster node"), guarded("put", url):
        clients(url).get("x")


def _until_served(call: Callable[[], Any], where: str) -> tuple[Any, int]:
    """Call until it succeeds (deadline); each failure must be ``BackendUnavailableError``.
    Returns the reply and how many calls failed."""
    deadline = time.monotonic() + DEADLINE_S
    failures = 0
    while True:
        try:
            with guarded("put", where):
                return call(), failures
        except BackendUnavailableError:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def _until_served_async(call: Callable[[], Awaitable[Any]], where: str) -> Any:
    """``_until_served`` for an asyncio call."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            with guarded("put", where):
                return await call()
        except BackendUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _pipelined(client: Client, sha: str) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    pipe.evalsha(sha, 1, "cv:{a}:q", "cv:{a}:", "x")
    pipe.llen("cv:{a}:q")
    return pipe.execute()


async def _pipelined_async(client: AsyncClient, sha: str) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    pipe.evalsha(sha, 1, "cv:{a}:q", "cv:{a}:", "x")
    pipe.llen("cv:{a}:q")
    return await pipe.execute()


def test_cluster_master_killed_calls_fail_as_unavailable_then_reach_the_promoted_replica(
    redis_cluster: ClusterOfSix, redis_cluster_url: str, clients: Callable[..., Client]
) -> None:
    asyncio.run(_cluster_failover(redis_cluster, redis_cluster_url, clients(redis_cluster_url)))


async def _cluster_failover(cluster: ClusterOfSix, url: str, client: Client) -> None:
    where = redact_url(url)
    aclient = make_async_client(url, timeout_s=2.0, max_connections=4)
    try:
        # Given a blocking and an asyncio client that have used queue a's master
        script = client.register_script(PUSH)
        assert script(keys=["cv:{a}:q"], args=["cv:{a}:", "1"]) == [1, 1]
        assert (await _pipelined_async(aclient, script.sha))[1] == 2
        # When that master is SIGKILLed
        old = cluster.kill_master_of("cv:{a}:")
        # Then their next calls fail as unavailable, in words for people
        with pytest.raises(BackendUnavailableError, match="cannot enqueue"), guarded("put", where):
            client.evalsha(script.sha, 1, "cv:{a}:q", "cv:{a}:", "2")
        with pytest.raises(BackendUnavailableError, match="cannot enqueue"), guarded("put", where):
            await _pipelined_async(aclient, script.sha)
        # And once a replica is promoted, scripts and pipelines of both work again
        new = await asyncio.to_thread(cluster.wait_promoted, "cv:{a}:", old)
        reply, _ = _until_served(lambda: script(keys=["cv:{a}:q"], args=["cv:{a}:", "3"]), where)
        assert reply[1] >= 1
        assert cluster.master_of("cv:{a}:") == new
        assert _until_served(lambda: _pipelined(client, script.sha), where)[0][1] >= 1
        replies = await _until_served_async(lambda: _pipelined_async(aclient, script.sha), where)
        assert replies[1] >= 1
    finally:
        await disconnect_async(aclient)


# --- Sentinel ---


def test_sentinel_client_reaches_the_master_and_its_database(
    redis_sentinel: SentinelGroup, redis_sentinel_url: str, clients: Callable[..., Client]
) -> None:
    client = clients(redis_sentinel_url + "/2")
    script = client.register_script(PUSH)
    assert script(keys=["cv:{a}:q"], args=["cv:{a}:", "x"]) == [1, 1]
    master = redis_sentinel.master_port()
    assert master is not None
    assert redis.Redis(port=master, db=2).llen("cv:{a}:q") == 1


def test_sentinel_without_the_service_is_unavailable(
    redis_sentinel: SentinelGroup, clients: Callable[..., Client]
) -> None:
    url = redis_sentinel.url.rsplit("/", 1)[0] + "/nosuchservice"
    with pytest.raises(BackendUnavailableError, match="no sentinel"), guarded("put", url):
        clients(url).get("x")


def test_sentinel_failover_calls_fail_as_unavailable_then_reach_the_new_master(
    redis_sentinel: SentinelGroup, redis_sentinel_url: str, clients: Callable[..., Client]
) -> None:
    asyncio.run(_sentinel_failover(redis_sentinel, redis_sentinel_url, clients(redis_sentinel_url)))


async def _sentinel_failover(group: SentinelGroup, url: str, client: Client) -> None:
    where = redact_url(url)
    aclient = make_async_client(url, timeout_s=2.0, max_connections=4)
    try:
        # Given a blocking and an asyncio client of the master
        client.rpush("cv:{a}:q", "before")
        assert await aclient.llen("cv:{a}:q") == 1
        # When the master is SIGKILLed
        old = group.kill_master()
        # Then their calls fail as unavailable
        with pytest.raises(BackendUnavailableError, match="cannot enqueue"), guarded("put", where):
            client.rpush("cv:{a}:q", "during")
        with pytest.raises(BackendUnavailableError, match="cannot enqueue"), guarded("put", where):
            await aclient.rpush("cv:{a}:q", "during")
        # And after the failover both reach the new master
        new = await asyncio.to_thread(group.wait_failover, old)
        assert _until_served(lambda: client.rpush("cv:{a}:q", "after"), where)[0] >= 1
        assert await _until_served_async(lambda: aclient.rpush("cv:{a}:q", "after"), where) >= 2
        assert group.master_port() == new != old
    finally:
        await disconnect_async(aclient)


# --- asyncio clients ---


def test_async_clients_run_pipelined_scripts_on_cluster_and_sentinel(
    redis_cluster_url: str, redis_sentinel_url: str
) -> None:
    async def run(url: str) -> list[Any]:
        client = make_async_client(url, timeout_s=2.0, max_connections=4)
        try:
            sha = await client.script_load(PUSH)
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(sha, 1, "cv:{a}:q", "cv:{a}:", "1")
            pipe.evalsha(sha, 1, "cv:{b}:q", "cv:{b}:", "2")
            return await pipe.execute()
        finally:
            await disconnect_async(client)

    for url in (redis_cluster_url, redis_sentinel_url):
        assert asyncio.run(run(url)) == [[1, 1], [1, 1]]


def test_setup_warnings_cover_every_master_of_a_cluster(redis_cluster_url: str) -> None:
    from services.backends.redis.aio import AsyncRedisQueue
    from services.backends.redis.queue import RedisQueue
    from services.settings import QueueSettings

    # The fixture's nodes keep nothing on disk: each master must be named in its own warning.
    queue = RedisQueue(redis_cluster_url, QueueSettings())
    try:
        warnings = [w for w in queue.check_server() if "no persistence" in w]
    finally:
        queue.close()
    nodes = {re.search(r"\(node ([^)]+)\)", w).group(1) for w in warnings}  # type: ignore[union-attr]
    assert len(warnings) == 3 and len(nodes) == 3, warnings

    async def check() -> list[str]:
        served = AsyncRedisQueue(redis_cluster_url, QueueSettings())
        try:
            return await served.check_server()
        finally:
            await served.aclose()

    found = [w for w in asyncio.run(check()) if "no persistence" in w]
    assert {re.search(r"\(node ([^)]+)\)", w).group(1) for w in found} == nodes  # type: ignore[union-attr]
