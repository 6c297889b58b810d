"""Grouping work by queue and by Redis Cluster slot, for a backend whose scripts take one queue.

Settling calls (ACK, NACK, RETRY, DEAD, CONFIRM) are per queue: ``by_queue`` splits a batch of
deliveries by ``delivery.queue``, keeping their order within each queue. An idle consumer waits
on its queues' doorbells with ``BLPOP``, which takes keys of one slot only on a cluster:
``slot_groups`` splits the bells into runs of one slot (all of them one group on a single node
or behind Sentinel, where any keys go together). ``node_client`` is the client of the node that
holds a key, for pipelines with a keyless command (``TIME``, ``WAIT``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.cluster
import redis.crc

from services.errors import BackendUnavailableError

Item = TypeVar("Item")


def by_queue(items: Iterable[Item], queue_of: Callable[[Item], str]) -> dict[str, list[Item]]:
    """``items`` grouped by their queue, in first-seen queue order and their own order."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(queue_of(item), []).append(item)
    return groups


def chunked(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    """``items`` cut into runs of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def slot_groups(client: Any, names: Sequence[str]) -> list[list[int]]:
    """Indexes of ``names`` (keys) grouped by cluster slot, in first-seen order; one group
    holding them all when ``client`` is not a cluster client."""
    if not isinstance(client, redis.cluster.RedisCluster):
        return [list(range(len(names)))]
    groups: dict[int, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(redis.crc.key_slot(name.encode()), []).append(index)
    return list(groups.values())


def node_client(client: Any, route_key: str) -> redis.Redis:
    """The client of the master that owns ``route_key``'s slot (``client`` itself when it is not
    a cluster client): for a pipeline that holds a keyless command (``TIME``, ``WAIT``), which
    redis-py's cluster pipeline cannot route."""
    if not isinstance(client, redis.cluster.RedisCluster):
        return client  # type: ignore[no-any-return]
    node = client.get_node_from_key(route_key)  # type: ignore[no-untyped-call]
    if node is None:
        raise BackendUnavailableError(f"no cluster node serves the slot of {route_key!r}")
    return client_of(client, node)


def client_of(cluster: redis.cluster.RedisCluster, node: Any) -> redis.Redis:
    """The plain client of one ``node`` of ``cluster`` (made on first use)."""
    return node.redis_connection or cluster.get_redis_connection(node)
