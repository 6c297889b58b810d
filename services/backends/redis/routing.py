"""Grouping work by queue and by Redis Cluster slot, for a backend whose scripts take one queue.

Settling calls (ACK, NACK, RETRY, DEAD, CONFIRM) are per queue: ``by_queue`` splits a batch of
deliveries by ``delivery.queue``, keeping their order within each queue. An idle consumer waits
on its queues' doorbells with ``BLPOP``, which takes keys of one slot only on a cluster:
``slot_groups`` splits the bells into runs of one slot (all of them one group on a single node
or behind Sentinel, where any keys go together).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.cluster
import redis.crc

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
