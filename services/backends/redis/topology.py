"""Clients for Redis Cluster and Sentinel, set up like ``connection.make_client``'s.

Both keep the one-server rules: every call bounded by its socket timeout, no retry with
backoff, RESP2. What each adds to follow a topology change:

* **Cluster** (``ClusterClient``, ``AsyncClusterClient``): redis-py's cluster client follows
  ``MOVED``/``ASK`` replies (the command did not run, so sending it to the right node is safe)
  and refreshes its slot map after a connection error. It does *not* resend a command that
  failed on a connection error: its reply may be lost after it ran (a FETCH that ran on a
  master killed before answering leased jobs nobody saw); the caller gets the error, as on
  one server, and its next call goes to the promoted replica.
  Two changes to redis-py's sync client: it connects on first use, not in the constructor (a
  worker started before its cluster waits for it in ``check_server``, and opening a queue
  never fails), and its pipelines run ``EVALSHA`` (redis-py blocks scripts in cluster
  pipelines; ours route each call by its first key, which is what the queue scripts need).
* **Sentinel**: ``Sentinel(...).master_for(service)``: each new connection asks the sentinels
  for the master; a connection to a master that died or was demoted fails once and the next
  one reaches the promoted replica. ``MasterNotFoundError``: no sentinel names a master.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.sentinel
from redis._parsers import Encoder
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, PipelineStrategy, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

from services.backends.redis.urls import Topology
from services.errors import ConfigError

_REDIRECTED = (AskError, TryAgainError)
"""Replies saying the command did not run on that node (``MovedError`` is an ``AskError``)."""
_ONE_SERVER_ONLY = frozenset({"connection_pool"})
"""Attributes of one-server clients, which code probes (``hasattr``) to tell clients apart: a
``ClusterClient`` lacks them, and says so without connecting."""
_STALE_MAP = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, AskError)
"""Pipeline failures after which the slot map is read again before the next call."""


class ClusterClient(RedisCluster):
    """redis-py's ``RedisCluster``, connecting on first use, whose pipelines run scripts."""

    def __init__(self, **settings: Any) -> None:
        # RedisCluster.__init__ connects (CLUSTER SLOTS, COMMAND): it runs on first use.
        self.__dict__["_deferred"] = settings
        self.__dict__["_starting"] = threading.RLock()
        # register_script encodes the script with the client's encoder: no need to connect.
        self.__dict__["encoder"] = Encoder("utf-8", "strict", decode_responses=False)  # type: ignore[no-untyped-call]

    def __getattr__(self, name: str) -> Any:
        # Python calls this only for attributes the object lacks: before the first use, those
        # RedisCluster.__init__ sets (so any other name, even in hasattr(), connects too).
        if name.startswith("__") or name in _ONE_SERVER_ONLY:
            raise AttributeError(name)
        with self.__dict__["_starting"]:
            settings = self.__dict__.pop("_deferred", None)
            if settings is None:  # started meanwhile by another thread, or a missing name
                return object.__getattribute__(self, name)
            try:
                RedisCluster.__init__(self, **settings)
            except BaseException:
                self.__dict__["_deferred"] = settings  # the next call tries again
                raise
        return getattr(self, name)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ScriptPipeline:
        """A pipeline whose ``evalsha`` calls are routed by their first key."""
        pipe = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]
        # The same object with our methods: copying redis-py's constructor arguments instead
        # would break with each redis-py release that adds one.
        pipe.__class__ = ScriptPipeline
        return pipe  # type: ignore[no-any-return]

    def close(self) -> None:
        """Drop the connections (nothing to do if the client never connected)."""
        if "_deferred" not in self.__dict__:
            super().close()


class ScriptPipeline(ClusterPipeline):
    """A cluster pipeline that runs ``EVALSHA`` and never resends a command that may have run.

    redis-py resends, one by one, every command of a pipeline that met a connection error or
    a timeout; this one resends only those the cluster redirected (``MOVED``, ``ASK``,
    ``TRYAGAIN``: they did not run), and refreshes the slot map after any of these errors.
    """

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Queue a script call; it goes to the node of its first key."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)  # type: ignore[no-untyped-call]

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands, one round trip per node; replies in order."""
        if not isinstance(self._execution_strategy, PipelineStrategy):
            return super().execute(raise_on_error)  # a transaction: redis-py's own rules
        stack = list(self._execution_strategy.command_queue)
        try:
            replies: list[Any] = self.send_cluster_commands(  # type: ignore[no-untyped-call]
                stack, raise_on_error=False, allow_redirections=False
            )
        finally:
            self.reset()  # type: ignore[no-untyped-call]
        if any(isinstance(reply, _STALE_MAP) for reply in replies):
            with contextlib.suppress(RedisError, RedisClusterException):
                self.nodes_manager.initialize()  # the next call goes to the right nodes
        for index, (command, reply) in enumerate(zip(stack, replies, strict=True)):
            if isinstance(reply, _REDIRECTED):
                replies[index] = self._resend(command.args, command.options)
        if raise_on_error:
            _raise_first(replies)
        return replies

    def _resend(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        try:
            return self.parent_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            return exc


class AsyncClusterClient(redis.asyncio.cluster.RedisCluster):
    """redis-py's asyncio ``RedisCluster`` (which connects on first use) running scripts in
    pipelines; its pipelines already resend only redirected commands."""

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> AsyncScriptPipeline:
        """A pipeline whose ``evalsha`` calls are routed by their first key."""
        pipe = super().pipeline(transaction, shard_hint)
        pipe.__class__ = AsyncScriptPipeline  # type: ignore[type-abstract]  # as ClusterClient
        return pipe  # type: ignore[return-value]


class AsyncScriptPipeline(redis.asyncio.cluster.ClusterPipeline):
    """The asyncio cluster pipeline with ``evalsha`` allowed, that reads the slot map again
    after a node failed it (redis-py does so only when it may retry, and we let it not)."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Queue a script call; it goes to the node of its first key."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        """Run the queued commands, one round trip per node; replies in order."""
        client = self.cluster_client
        try:
            replies = await super().execute(False, allow_redirections)
        except (*_STALE_MAP, SlotNotCoveredError):
            client._initialize = True  # as its single commands do after a connection error
            raise
        if any(isinstance(reply, _STALE_MAP) for reply in replies):
            client._initialize = True
        if raise_on_error:
            _raise_first(replies)
        return replies


def _raise_first(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _tls(topology: Topology) -> dict[str, Any]:
    if not topology.tls:
        return {}
    return {"ssl": True, **{k: v for k, v in topology.options.items() if k.startswith("ssl_")}}


def _common(topology: Topology, timeout_s: float) -> dict[str, Any]:
    """Connection settings of every data node: bounded, RESP2, the URL's credentials."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "socket_keepalive": True,
        "protocol": 2,
        "username": topology.username,
        "password": topology.password,
        "client_name": topology.options.get("client_name"),
        **_tls(topology),
    }


def cluster_client(topology: Topology, *, timeout_s: float) -> ClusterClient:
    """A cluster client on ``topology``'s startup nodes (connects on first use)."""
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],  # type: ignore[no-untyped-call]
        retry=Retry(NoBackoff(), 0),
        **_common(topology, timeout_s),
    )


def async_cluster_client(
    topology: Topology, *, timeout_s: float, max_connections: int
) -> AsyncClusterClient:
    """``cluster_client`` for an event loop; at most ``max_connections`` per node.

    Raises:
        ConfigError: the URL names ``?ssl_ca_path=``, which redis-py's asyncio cluster client
            does not take.
    """
    if "ssl_ca_path" in topology.options:
        raise ConfigError(
            "the asyncio Redis Cluster client (conveyor serve) cannot read ?ssl_ca_path=; "
            "name the CA file with ?ssl_ca_certs="
        )
    return AsyncClusterClient(
        startup_nodes=[
            redis.asyncio.cluster.ClusterNode(host, port) for host, port in topology.hosts
        ],
        retry=AsyncRetry(NoBackoff(), 0),
        max_connections=max_connections,
        **_common(topology, timeout_s),
    )


def _sentinel_settings(topology: Topology, timeout_s: float) -> dict[str, Any]:
    """How to reach the sentinels themselves: bounded, their own credentials."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "username": topology.sentinel_username,
        "password": topology.sentinel_password,
        **_tls(topology),
    }


def sentinel_client(topology: Topology, *, timeout_s: float) -> redis.Redis:
    """A client of the master of ``topology.service``, found through the sentinels."""
    sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(topology.hosts),
        sentinel_kwargs={**_sentinel_settings(topology, timeout_s), "retry": Retry(NoBackoff(), 0)},
    )
    return sentinels.master_for(  # type: ignore[no-any-return,no-untyped-call]
        topology.service,
        db=topology.db,
        retry=Retry(NoBackoff(), 0),
        **_common(topology, timeout_s),
    )


def sentinels_of(client: Any) -> list[Any]:
    """The clients a Sentinel-managed client asks about its master ([] for any other)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []


class _BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """A Sentinel pool that waits (up to its timeout) for a free connection, like the
    one-server asyncio client's pool, instead of failing at once."""


def async_sentinel_client(
    topology: Topology, *, timeout_s: float, max_connections: int
) -> redis.asyncio.Redis:
    """``sentinel_client`` for an event loop, at most ``max_connections`` connections."""
    sentinels = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(topology.hosts),
        sentinel_kwargs={
            **_sentinel_settings(topology, timeout_s),
            "retry": AsyncRetry(NoBackoff(), 0),
        },
    )
    return sentinels.master_for(  # type: ignore[no-any-return]
        topology.service,
        connection_pool_class=_BlockingSentinelPool,
        db=topology.db,
        retry=AsyncRetry(NoBackoff(), 0),
        max_connections=max_connections,
        timeout=timeout_s,
        **_common(topology, timeout_s),
    )
