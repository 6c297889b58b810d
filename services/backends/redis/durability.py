"""Durable writes: script calls confirmed by replicas (Redis ``WAIT``) before they count.

Replication is asynchronous: a master answers a write before its replicas have it, so a master
that dies in that window takes the write with it, and the replica promoted in its place never
saw it. With ``QueueSettings.durable_replicas = n`` (``--durable``), puts and acks are followed
by ``WAIT n timeout``, which blocks *the connection that sent it* until ``n`` replicas have
acknowledged the replication offset of that connection's last write, or the timeout passes,
and answers how many did. So the calls and their ``WAIT`` travel on one connection, in one
pipeline: one round trip plus the replicas' acknowledgement::

    pipeline on the queue's master:  EVALSHA PUT ... | INCRBY cv:{q}:seq 0 | WAIT n ms
                                     \\__ replies __/                        \\__ replicas that
                                                                               have it all

The ``INCRBY ... 0`` is a write that changes nothing: it makes sure the connection's last write
comes after the calls even when they wrote nothing (a repeated put finds its jobs present, and
writes nothing). Without it ``WAIT`` would measure an older offset, and confirm a job stored
by an earlier, unconfirmed attempt that a replica may not have yet. The replication stream
is in order, so a replica that has the ``INCRBY`` has every write before it.

A ``WAIT`` that answers fewer than ``n`` raises ``BackendUnavailableError``: the write happened
on the master but is not confirmed, so for a put the caller's retry (put-if-absent, safe to
repeat) runs it again, and for an ack the job may run again after a failover (a duplicate,
never a loss).

On a cluster, redis-py's cluster client would send ``WAIT`` to every primary on connections that
wrote nothing (``WAIT`` has no key), so ``node_client`` picks the node that owns the queue's
slot and the pipeline goes through that node's own client. A ``MOVED`` reply there (the slot
moved after a failover) refreshes the cluster's slot map and raises ``BackendUnavailableError``;
the retry reaches the new owner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

from services.backends.redis.connection import guarded
from services.backends.redis.routing import node_client
from services.errors import BackendUnavailableError
from services.settings import QueueSettings

ConfirmerType = TypeVar("ConfirmerType", bound="Confirmer")

_REROUTED = (AskError, ClusterDownError, TryAgainError)
"""Replies saying the node does not serve the slot (now): ``MOVED`` (a ``MovedError`` is an
``AskError``; redis-py strips the word ``MOVED`` from its message), ``ASK``, ``CLUSTERDOWN``,
``TRYAGAIN``."""

QueueCommands = Callable[[Any], None]
"""Queues the commands to confirm on a pipeline (sync or asyncio)."""


class Confirmer:
    """Runs a backend's durable calls: ``replicas`` replicas, ``timeout_s`` each time."""

    def __init__(self, client: Any, *, replicas: int, timeout_s: float, where: str) -> None:
        self._client = client
        self.replicas = replicas
        self._timeout_ms = max(round(timeout_s * 1000), 1)
        self._where = where

    def run(self, route_key: str, queue_commands: QueueCommands, what: str) -> list[Any]:
        """Send what ``queue_commands`` queues, then ``INCRBY route_key 0`` and ``WAIT``, in
        one pipeline on the master of ``route_key`` (a key of the calls' slot that holds an
        integer); the replies (errors as values, as ``execute(raise_on_error=False)`` gives
        them) once enough replicas have them, else ``BackendUnavailableError``."""
        pipe = node_client(self._client, route_key).pipeline(transaction=False)
        self._queue(pipe, route_key, queue_commands)
        try:
            with guarded(what, self._where):
                replies = pipe.execute(raise_on_error=False)
        except BackendUnavailableError:
            self._refresh()  # the node is gone: the next call asks who serves the slot now
            raise
        moved = self._check(replies)
        if moved:
            self._refresh()
        return self._confirmed(replies, moved)

    def _refresh(self) -> None:
        """Read the cluster's slot map again (no-op on one server or Sentinel)."""
        if isinstance(self._client, redis.cluster.RedisCluster):
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                self._client.nodes_manager.initialize()

    def load(self, route_key: str, source: str) -> None:
        """Load a script on the master of ``route_key`` (it was missing there)."""
        with guarded("durable", self._where):
            node_client(self._client, route_key).script_load(source)

    def _queue(self, pipe: Any, route_key: str, queue_commands: QueueCommands) -> None:
        queue_commands(pipe)
        pipe.execute_command("INCRBY", route_key, 0)
        pipe.execute_command("WAIT", self.replicas, self._timeout_ms)

    def _check(self, replies: list[Any]) -> str | None:
        """The redirection among ``replies`` (``MOVED``, ``CLUSTERDOWN``...), if any; also a
        ``WAIT`` refused because the node we wrote to has become a replica (a stale map)."""
        for reply in replies:
            if isinstance(reply, _REROUTED):
                return f"{type(reply).__name__}: {reply}"
        if isinstance(replies[-1], redis.ResponseError) and "replica" in str(replies[-1]):
            return f"the node is a replica now: {replies[-1]}"
        return None

    def _confirmed(self, replies: list[Any], moved: str | None) -> list[Any]:
        if moved:
            raise BackendUnavailableError(
                f"Redis at {self._where}: the queue's slot moved to another node ({moved}); "
                "the write was not made there, retrying reaches the new owner"
            )
        *out, _fence, acked = replies
        if isinstance(acked, Exception):
            with guarded("durable", self._where):
                raise acked
        if int(acked) < self.replicas:
            raise BackendUnavailableError(
                f"Redis at {self._where}: only {int(acked)} of {self.replicas} replica(s) "
                f"confirmed the write within {self._timeout_ms} ms (--durable); it is on the "
                "master but could be lost in a failover: not confirmed"
            )
        return out


class AsyncConfirmer(Confirmer):
    """``Confirmer`` for the asyncio clients; keeps a client per cluster node it wrote to."""

    def __init__(self, client: Any, *, replicas: int, timeout_s: float, where: str) -> None:
        super().__init__(client, replicas=replicas, timeout_s=timeout_s, where=where)
        self._nodes: dict[str, redis.asyncio.Redis] = {}

    async def run_async(
        self, route_key: str, queue_commands: QueueCommands, what: str
    ) -> list[Any]:
        """``Confirmer.run`` on the event loop."""
        pipe = self._node(route_key).pipeline(transaction=False)
        self._queue(pipe, route_key, queue_commands)
        try:
            with guarded(what, self._where):
                replies = await pipe.execute(raise_on_error=False)
        except BackendUnavailableError:
            await self._refresh_async()  # the node is gone: ask who serves the slot now
            raise
        moved = self._check(replies)
        if moved:
            await self._refresh_async()
        return self._confirmed(replies, moved)

    async def _refresh_async(self) -> None:
        """Read the cluster's slot map again and forget the node clients (they may be gone)."""
        if isinstance(self._client, redis.asyncio.cluster.RedisCluster):
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                await self._client.nodes_manager.initialize()
            await self.aclose()

    async def load_async(self, route_key: str, source: str) -> None:
        """``load`` on the event loop."""
        with guarded("durable", self._where):
            await self._node(route_key).script_load(source)

    def _node(self, route_key: str) -> redis.asyncio.Redis:
        client = self._client
        if not isinstance(client, redis.asyncio.cluster.RedisCluster):
            return client  # type: ignore[no-any-return]
        node = client.get_node_from_key(route_key)
        if node is None:
            raise BackendUnavailableError(f"no cluster node serves the slot of {route_key!r}")
        found = self._nodes.get(node.name)
        if found is None:
            pool = redis.asyncio.ConnectionPool(
                connection_class=node.connection_class, **node.connection_kwargs
            )
            found = self._nodes[node.name] = redis.asyncio.Redis(connection_pool=pool)
        return found

    async def aclose(self) -> None:
        """Drop the node clients this confirmer made."""
        for found in self._nodes.values():
            await found.aclose()
            await found.connection_pool.disconnect()
        self._nodes.clear()


def confirmer_for(
    kind: type[ConfirmerType], client: Any, settings: QueueSettings, where: str
) -> ConfirmerType | None:
    """A ``kind`` confirmer on ``client`` when ``settings`` ask for durable writes, else None."""
    if not settings.durable_replicas:
        return None
    return kind(
        client,
        replicas=settings.durable_replicas,
        timeout_s=settings.durable_timeout_s,
        where=where,
    )
