"""Checks that a Redis server can keep jobs safely, that it did not lose them, and that it
holds no data of the layout before 0.2.

A queue needs ``maxmemory-policy noeviction`` (any other policy may evict queued jobs under
memory pressure) and some persistence (AOF or RDB snapshots), else a restart loses every job.
Those setup warnings are logged only when ``check`` is called (the supervisor does, once per
process tree), never on a connection's first put or get, and each distinct warning only once per
connection: ``check`` runs every 30 s, and a log that repeats itself gets ignored.

**Lost data.** Each queue's ``T e`` and the registry's ``cv:{cv}:e`` hold a random *epoch*,
created once with ``SET NX`` (per queue, so each shard of a cluster carries the epochs of its
own queues). A connection remembers the epoch it first saw of each (silently, on first use of
a queue); the consumer heartbeat reads those of the queues it serves each beat, and ``check``
claims the registry's, those of the queues this connection used and of every registered queue.
An epoch that vanished or holds another value means Redis lost that data (restarted empty, a
flush, a shard failed over to a replica that had nothing): whoever re-created it first, every
connection that saw the old epoch notices. That is an *alarm*: logged at ERROR once, and
sticky, so health and status keep showing it.

**Old layout.** The first use of a connection (and ``check``) looks for the global keys of the
layout before 0.2 (``keys.OLD_LAYOUT_KEYS``) and raises ``ConfigError`` if one is there.

The asyncio backend (``aio``) does the same I/O through ``redis.asyncio`` and hands the replies
to the IO-free halves here (``refuse_old_layout``, ``epoch_keys``, ``ServerWatch.report``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from services.backends.redis import keys
from services.backends.redis.routing import client_of
from services.errors import ConfigError

log = logging.getLogger("conveyor.redis")


@dataclass
class ServerWatch:
    """The epochs this connection first saw (by epoch key), and the alarms it raised since."""

    epochs: dict[str, bytes | None] = field(default_factory=dict)
    alarms: list[str] = field(default_factory=list)
    logged: set[str] = field(default_factory=set)
    """Setup warnings already logged by this connection."""
    layout_checked: bool = False

    def baseline(self, client: Any, queues: Iterable[str], where: str) -> None:
        """Refuse an old layout (once), then remember the epochs of the registry and of
        ``queues`` not seen yet (creating them where missing); logs nothing."""
        if not self.layout_checked:
            refuse_old_layout(_exists(client, keys.OLD_LAYOUT_KEYS), where)
            self.layout_checked = True
        fresh = [name for name in epoch_keys(queues) if name not in self.epochs]
        if fresh:
            self.epochs.update(zip(fresh, claim(client, fresh), strict=True))

    def observe(self, name: str, value: bytes | None, where: str) -> None:
        """Compare the epoch ``name`` holds now with the one first seen; alarm on a change."""
        if name not in self.epochs:
            self.epochs[name] = value
            return
        if value != self.epochs[name]:
            how = "vanished" if value is None else "was re-created with another value"
            self.alarm(
                f"Redis at {where} restarted EMPTY or was flushed (the queue marker {how}): "
                "jobs queued or in flight before then were lost"
            )

    def alarm(self, text: str) -> None:
        """Add a sticky alarm, logged at ERROR the first time."""
        if text not in self.alarms:
            log.error("%s", text)
            self.alarms.append(text)

    def check(self, client: Any, where: str, queues: Iterable[str]) -> list[str]:
        """Setup warnings about ``client``'s server (logged), then every alarm so far; watches
        the registry, ``queues`` and every registered queue."""
        self.baseline(client, (), where)
        warnings = [
            text
            for server, label in masters(client, where)
            for text in config_warnings(server.info(), _rdb_saves(server), label)
        ]
        registered = {_text(name) for name in client.smembers(keys.REGISTRY_KEY)}
        names = self.watched(epoch_keys({*queues, *registered}))
        return self.report(warnings, dict(zip(names, claim(client, names), strict=True)), where)

    def watched(self, names: Iterable[str]) -> list[str]:
        """``names`` and every epoch key seen before, once each, in a stable order."""
        return sorted({*names, *self.epochs})

    def report(
        self, warnings: list[str], epochs: Mapping[str, bytes | None], where: str
    ) -> list[str]:
        """Log ``warnings`` not logged yet, observe the server's ``epochs``; warnings + alarms.

        The IO-free half of ``check``, which the asyncio backend (``aio``) calls too.
        """
        for text in warnings:
            if text not in self.logged:
                log.warning("%s", text)
                self.logged.add(text)
        for name, value in epochs.items():
            self.observe(name, value, where)
        return warnings + self.alarms


def masters(client: Any, where: str) -> list[tuple[redis.Redis, str]]:
    """Each master behind ``client`` with the name warnings give it: every primary of a
    cluster (``where`` and its address: each has its own settings), else ``client`` itself."""
    if not isinstance(client, redis.cluster.RedisCluster):
        return [(client, where)]
    return [
        (client_of(client, node), f"{where} (node {node.name})")
        for node in client.get_primaries()  # type: ignore[no-untyped-call]
    ]


async def warnings_async(client: Any, where: str) -> list[str]:
    """``ServerWatch.check``'s setup warnings through an asyncio client, every cluster master's."""
    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        info = await client.info()
        return config_warnings(info, await rdb_saves_async(client), where)
    nodes = client.get_primaries()
    infos = await client.info(target_nodes=nodes)
    # One reply per node, by name (redis-py's types give a single server's shape).
    saves: dict[str, Any] = cast(Any, await client.config_get("save", target_nodes=nodes))
    return [
        text
        for node in nodes
        for text in config_warnings(
            infos[node.name], _snapshots_set(saves[node.name]), f"{where} (node {node.name})"
        )
    ]


def epoch_keys(queues: Iterable[str]) -> list[str]:
    """The registry's epoch key, then those of ``queues`` (sorted, once each)."""
    return [keys.REGISTRY_EPOCH_KEY, *(keys.of(queue).epoch for queue in sorted(set(queues)))]


def refuse_old_layout(found: Sequence[Any], where: str) -> None:
    """Raise ``ConfigError`` if ``found`` (``EXISTS`` of each ``OLD_LAYOUT_KEYS``) says one is
    there."""
    old = [name for name, n in zip(keys.OLD_LAYOUT_KEYS, found, strict=True) if int(n)]
    if old:
        raise ConfigError(
            f"Redis at {where} holds Conveyor data in the layout before 0.2 (no hash tags; "
            f"found {', '.join(old)}): finish those jobs with the previous version "
            "(conveyor worker --burst) or delete the old keys (redis-cli --scan --pattern "
            "'cv:*' shows them), then start again"
        )


def _exists(client: Any, names: Sequence[str]) -> list[Any]:
    # One EXISTS each: on a cluster the names are in different slots.
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    return list(pipe.execute())


def claim(client: Any, names: Sequence[str]) -> list[bytes]:
    """The epochs ``names`` hold, each set to a new random one first if it is missing."""
    fresh = [new_epoch() for _ in names]
    pipe = client.pipeline(transaction=False)
    try:
        # SET NX GET (Redis 7): one step, so two processes claiming at once agree on the value.
        for name, value in zip(names, fresh, strict=True):
            pipe.set(name, value, nx=True, get=True)
        found = pipe.execute()
    except redis.ResponseError:  # Redis 6.2 refuses NX with GET: two steps, same outcome
        pipe = client.pipeline(transaction=False)
        for name, value in zip(names, fresh, strict=True):
            pipe.set(name, value, nx=True)
        for name in names:
            pipe.get(name)
        found = pipe.execute()[len(names) :]
    return [_epoch_of(got, value) for got, value in zip(found, fresh, strict=True)]


async def claim_async(client: Any, names: Sequence[str]) -> list[bytes]:
    """``claim`` for the asyncio client (the same two steps on Redis 6.2)."""
    fresh = [new_epoch() for _ in names]
    try:
        pipe = client.pipeline(transaction=False)
        for name, value in zip(names, fresh, strict=True):
            pipe.set(name, value, nx=True, get=True)
        found = await pipe.execute()
    except redis.ResponseError:
        pipe = client.pipeline(transaction=False)
        for name, value in zip(names, fresh, strict=True):
            pipe.set(name, value, nx=True)
        for name in names:
            pipe.get(name)
        found = (await pipe.execute())[len(names) :]
    return [_epoch_of(got, value) for got, value in zip(found, fresh, strict=True)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_epoch() -> bytes:
    """A random epoch for a database that has none yet."""
    return secrets.token_hex(8).encode()


def _epoch_of(found: object, fresh: bytes) -> bytes:
    """The epoch a claim ends with: the one found in Redis, else the fresh one it just set."""
    return fresh if found is None else cast(bytes, found)


def config_warnings(info: dict[str, object], rdb_saves: bool, where: str) -> list[str]:
    """What is unsafe in a server's setup, from its ``INFO`` and whether it takes snapshots."""
    warnings = []
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != "noeviction":
        warnings.append(
            f"Redis at {where} has maxmemory-policy {policy}: it may evict queued jobs; "
            "set noeviction"
        )
    if not info.get("aof_enabled") and not rdb_saves:
        warnings.append(
            f"Redis at {where} has no persistence (appendonly no, save ''): "
            "a restart loses every job"
        )
    return warnings


async def rdb_saves_async(client: Any) -> bool:
    """``_rdb_saves`` for the asyncio client."""
    try:
        return _snapshots_set(await client.config_get("save"))
    except redis.ResponseError:
        return True


def _rdb_saves(client: Any) -> bool:
    try:
        return _snapshots_set(client.config_get("save"))
    except redis.ResponseError:
        return True  # CONFIG GET denied (ACL): assume the operator set snapshots up


def _snapshots_set(config: Mapping[Any, Any]) -> bool:
    """Whether ``CONFIG GET save`` answered with a snapshot schedule (``save ''``: none)."""
    return bool(str(config.get("save", "")).strip())
