"""Redis connections with bounded timeouts, and the mapping of redis-py errors to ours.

redis-py retries failed commands by default (with backoff); we turn that off so one call takes
at most its socket timeout, and the caller (the worker loop, the heartbeat) decides about
retrying. Errors leave this module as ``BackendUnavailableError`` (Redis unreachable, loading,
out of memory, read-only, a cluster failing over) or ``ConfigError`` (wrong password, ACL
denies a command, a cluster node behind a one-server URL), worded for the person reading them
("cannot enqueue: ...", not the method that failed).

The URL picks the topology (``urls``: one server, ``redis+cluster://``,
``redis+sentinel://``); ``topology`` builds the cluster and Sentinel clients with the same
settings. Code above this module sees a ``Client`` (``AsyncClient``) and calls the commands
all three share; ``disconnect`` releases any of them.

``KeptConnections`` sends pre-packed commands on one-server connections it keeps between calls
(the put path's: redis-py's per-command pool checkout costs more client CPU than the put).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

from services.backends.redis import topology, urls
from services.backends.redis.topology import AsyncClusterClient, ClusterClient
from services.backends.redis.urls import ALLOWED_QUERY, check_query
from services.errors import BackendUnavailableError, ConfigError

__all__ = [
    "ALLOWED_QUERY",
    "AsyncClient",
    "Client",
    "KeptConnections",
    "check_query",
    "command",
    "disconnect",
    "disconnect_async",
    "guarded",
    "make_async_client",
    "make_client",
    "phrase",
]

_BUSY_PREFIXES = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "CLUSTERDOWN", "TRYAGAIN")

_PHRASES = {
    "check_server": "cannot check the Redis server",
    "put": "cannot enqueue",
    "get": "cannot fetch jobs",
    "ack": "cannot acknowledge finished jobs",
    "hand_back": "cannot hand jobs back",
    "retry": "cannot schedule a retry",
    "dead_letter": "cannot dead-letter a job",
    "reclaim": "cannot hand back a stopped worker's jobs",
    "heartbeat": "cannot renew the worker's lease",
    "recover": "cannot recover expired leases",
    "depth": "cannot read the queue depth",
    "counts": "cannot count the queue's jobs",
    "stats": "cannot read the queue statistics",
    "status": "cannot read the job's status",
    "wait_finished": "cannot wait for the job",
    "dead_letters": "cannot list the dead letters",
    "revive": "cannot requeue dead letters",
    "delete_dead": "cannot delete dead letters",
    "queues": "cannot list the queues",
    "cancel": "cannot cancel the job",
}


def phrase(what: str) -> str:
    """``what`` (an operation's short name) as the start of a sentence for people."""
    return _PHRASES.get(what) or f"cannot {what.replace('_', ' ')}"


Client = redis.Redis | ClusterClient
"""A blocking client of any topology: one server or Sentinel's master (``redis.Redis``), or a
cluster (``ClusterClient``)."""
AsyncClient = redis.asyncio.Redis | AsyncClusterClient
"""An asyncio client of any topology."""


def make_client(url: str, *, timeout_s: float) -> Client:
    """A client whose every call (connect, send, read) gives up after ``timeout_s``.

    Nothing connects here: the first command does (so opening a queue never fails).

    Raises:
        ConfigError: the URL is malformed for its topology or carries a query option outside
            ``ALLOWED_QUERY`` (``urls``).
    """
    target = urls.parse(url)
    if target is not None and target.kind == "cluster":
        return topology.cluster_client(target, timeout_s=timeout_s)
    if target is not None:
        return topology.sentinel_client(target, timeout_s=timeout_s)
    check_query(url)
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    return redis.Redis(connection_pool=pool)


def make_async_client(url: str, *, timeout_s: float, max_connections: int = 64) -> AsyncClient:
    """``make_client`` for an event loop: bounded calls, no retries, and at most
    ``max_connections`` connections (per node on a cluster; a caller beyond waits up to
    ``timeout_s`` for one, except on a cluster, where redis-py fails it at once).

    Raises:
        ConfigError: as ``make_client``.
    """
    target = urls.parse(url)
    if target is not None and target.kind == "cluster":
        return topology.async_cluster_client(
            target, timeout_s=timeout_s, max_connections=max_connections
        )
    if target is not None:
        return topology.async_sentinel_client(
            target, timeout_s=timeout_s, max_connections=max_connections
        )
    check_query(url)
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=AsyncRetry(NoBackoff(), 0),
        protocol=2,
    )
    return redis.asyncio.Redis(connection_pool=pool)


def disconnect(client: Client) -> None:
    """Close every connection of a client ``make_client`` made: its pool (which we made, so
    ``Redis.close()`` would leave it open), a cluster's nodes, Sentinel's sentinels."""
    if isinstance(client, ClusterClient):
        client.close()
        return
    client.connection_pool.disconnect()
    for sentinel in topology.sentinels_of(client):
        sentinel.connection_pool.disconnect()


async def disconnect_async(client: AsyncClient) -> None:
    """``disconnect`` for a client ``make_async_client`` made."""
    await client.aclose()
    if isinstance(client, redis.asyncio.Redis):
        await client.connection_pool.disconnect()
        for sentinel in topology.sentinels_of(client):
            await sentinel.aclose()


def _is_cluster(where: str) -> bool:
    return urlsplit(where).scheme in urls.CLUSTER_SCHEMES


_CLUSTER_UNREACHABLE = (
    "cannot be connected",
    "not covered",
    "could not agree",
    "has no redis_connection",
    "doesn't exist in the cluster",
    "No targets were found",
)
"""Words of redis-py's ``RedisClusterException`` when the cluster is (partly) out of reach; its
other uses are mistakes in the calling code, raised as they are."""


def _cluster_error(exc: BaseException, what: str, where: str) -> Exception | None:
    """Our error for a cluster or Sentinel failure (None if ``exc`` is none of those)."""
    message = str(exc)
    if isinstance(exc, ClusterCrossSlotError) or _crosses_slots(message):
        return ConfigError(
            f"{phrase(what)}: Redis Cluster at {where} refused a command on keys of several "
            f"hash slots ({message}). Conveyor keeps each queue's keys under one hash tag, so "
            "this server holds data of another layout or this is a bug: please report it"
        )
    if isinstance(exc, AskError) and not _is_cluster(where):
        return ConfigError(
            f"{phrase(what)}: Redis at {where} is a Redis Cluster node ({message}); "
            "use a redis+cluster://host:port[,host:port...] URL"
        )
    if "Cluster mode is not enabled" in message:
        return ConfigError(
            f"{phrase(what)}: Redis at {where} is not a Redis Cluster node; use redis://"
        )
    if isinstance(exc, MasterNotFoundError):
        # redis-py appends each sentinel's client repr and error: count them instead.
        head, _, failures = message.partition(" : ")
        unanswered = f"; {failures.count(' - ')} did not answer" if failures else ""
        return BackendUnavailableError(
            f"{phrase(what)}: no sentinel at {where} names a master for the service (all "
            f"sentinels down, a failover in progress, or a wrong service name): {head}"
            f"{unanswered}"
        )
    unreachable = isinstance(exc, RedisClusterException) and any(
        words in message for words in _CLUSTER_UNREACHABLE
    )
    if unreachable or isinstance(exc, ClusterError | TryAgainError | AskError):
        return BackendUnavailableError(
            f"{phrase(what)}: Redis Cluster at {where} is failing over or moving slots, or "
            f"a node is unreachable; retry in a few seconds: {message}"
        )
    return None


def _crosses_slots(message: str) -> bool:
    return (
        message.startswith("CROSSSLOT")
        or "same key slot" in message  # redis-py's own check, before sending
        or "non local key" in message  # a script touched a key of another node
        or "do not hash to the same slot" in message  # a script with flags, Redis 7
    )


@contextmanager
def guarded(what: str, where: str) -> Iterator[None]:
    """Run Redis calls for ``what``, translating failures; ``where`` is the redacted URL.

    ``what`` is the operation's short name (``"put"``); messages use ``phrase(what)``.

    Errors of the asyncio client are the same classes; an ``await`` inside the block is
    guarded like a blocking call.
    """
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConfigError(
            f"{phrase(what)}: Redis at {where} refused the credentials: {exc}"
        ) from None
    except (redis.RedisError, RedisClusterException) as exc:
        mapped = _cluster_error(exc, what, where)
        if mapped is not None:
            raise mapped from exc
        _raise_plain(exc, what, where)
    except OSError as exc:
        raise BackendUnavailableError(
            f"{phrase(what)}: Redis at {where} is unreachable: {exc}"
        ) from exc


def _raise_plain(exc: BaseException, what: str, where: str) -> None:
    """Map a one-server failure; re-raise ``exc`` itself if it is none we know."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        raise BackendUnavailableError(
            f"{phrase(what)}: Redis at {where} is unreachable: {exc}"
        ) from exc
    if isinstance(exc, redis.ResponseError):
        message = str(exc)
        if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in message:
            raise ConfigError(
                f"{phrase(what)}: the Redis ACL user lacks a permission: {message}"
            ) from None
        if message.startswith(_BUSY_PREFIXES):
            raise BackendUnavailableError(f"{phrase(what)}: Redis at {where}: {message}") from exc
    raise exc


def command(client: Client, *args: Any) -> Any:
    """Send one raw command: for replies redis-py types too loosely, or float timeouts."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


_STALE_AFTER_S = 1.0
"""A kept connection idle this long is checked before use, as the pool checks every one."""


class KeptConnections:
    """Whole pre-packed commands sent on connections of a one-server client, kept out of its
    pool between calls; each reply read and returned as redis-py would (errors raised).

    redis-py checks a connection out of its pool and back in around every command (a lock, a
    readiness poll, metrics hooks), which costs a one-round-trip put more client CPU than the
    put itself. These connections leave the pool once and stay in use, one per thread calling
    at the same time (``list.pop``/``append`` are atomic): ``disconnect`` still closes them
    (the pool's in-use set holds them). A connection whose reply may be partly unread (any
    error but an error reply) is disconnected and reconnects on its next use; one idle for
    ``_STALE_AFTER_S`` is polled first, as the pool does at checkout, so a Redis restart or an
    idle timeout meanwhile costs a reconnect, not a failed call. A forked child drops its
    parent's connections.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list[tuple[Any, float]] = []
        """``(connection, time.monotonic() when last used)``, the last used at the end."""
        self._pid = os.getpid()

    @staticmethod
    def of(client: Client) -> KeptConnections | None:
        """Kept connections of ``client``, or None unless it is one server's (a cluster routes
        by key and Sentinel checks the master at release: both keep redis-py's own path)."""
        if isinstance(client, redis.Redis) and type(client.connection_pool) is redis.ConnectionPool:
            return KeptConnections(client)
        return None

    def call(self, packed: bytes) -> Any:
        """Send ``packed`` (one whole command) and read its reply.

        Raises:
            redis.RedisError: as the same command through redis-py (unmapped: see ``guarded``).
        """
        connection, since = self._take()
        try:
            if time.monotonic() - since > _STALE_AFTER_S:
                _drop_if_stale(connection)
            connection.send_packed_command((packed,))
            return connection.read_response()
        except redis.ResponseError:
            raise  # a whole reply, an error one: the connection is as good as before
        except BaseException:
            connection.disconnect()  # a reply may be late or half read: never read it as ours
            raise
        finally:
            self._idle.append((connection, time.monotonic()))

    def _take(self) -> tuple[Any, float]:
        if self._pid != os.getpid():  # forked: those sockets are the parent's
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self._pool.get_connection(), time.monotonic()  # checked by the pool


def _drop_if_stale(connection: Any) -> None:
    """Disconnect ``connection`` if the server closed it or sent what nobody asked for (it
    connects again when next used): the check the pool makes at checkout."""
    try:
        stale = connection.can_read()  # raises on a connection the server closed
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        stale = True
    if stale:
        connection.disconnect()
