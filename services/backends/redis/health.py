"""Checks that a Redis server can keep jobs safely, and that it did not lose them.

A queue needs ``maxmemory-policy noeviction`` (any other policy may evict queued jobs under
memory pressure) and some persistence (AOF or RDB snapshots), else a restart loses every job.
Those setup warnings are logged only when ``check`` is called (the supervisor does, once per
process tree), never on a connection's first put or get, and each distinct warning only once per
connection: ``check`` runs every 30 s, and a log that repeats itself gets ignored.

**Lost data.** The marker key holds a random *epoch*, created once per database with ``SET
NX``. Every connection remembers the epoch it first saw (silently, on first use); the consumer
heartbeat reads it each beat and ``check`` reads it too. A marker that vanished or holds another
value means the database lost its data (restarted empty, or flushed): whoever re-created it
first, every connection that saw the old epoch notices. That is an *alarm*: logged at ERROR
once, and sticky, so health and status keep showing it.

The asyncio backend (``aio``) reads the same things through ``claim_async`` and
``rdb_saves_async`` and hands them to ``ServerWatch.report``, the IO-free half of ``check``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio

from services.backends.redis.keys import MARKER_KEY

log = logging.getLogger("conveyor.redis")


@dataclass
class ServerWatch:
    """The epoch this connection first saw, and the alarms it raised since."""

    epoch: bytes | None = None
    alarms: list[str] = field(default_factory=list)
    logged: set[str] = field(default_factory=set)
    """Setup warnings already logged by this connection."""

    def baseline(self, client: redis.Redis) -> None:
        """Remember the current epoch (creating it in a fresh database); logs nothing."""
        if self.epoch is None:
            self.observe(_claim(client), "")

    def observe(self, value: bytes | None, where: str) -> None:
        """Compare the marker's current value with the epoch first seen; alarm on a change."""
        if self.epoch is None:
            self.epoch = value
            return
        if value != self.epoch:
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

    def check(self, client: redis.Redis, where: str) -> list[str]:
        """Setup warnings about ``client``'s server (logged), then every alarm so far."""
        warnings = config_warnings(client.info(), _rdb_saves(client), where)
        return self.report(warnings, _claim(client), where)

    def report(self, warnings: list[str], epoch: bytes | None, where: str) -> list[str]:
        """Log ``warnings`` not logged yet, observe the server's ``epoch``; warnings + alarms.

        The IO-free half of ``check``, which the asyncio backend (``aio``) calls too.
        """
        for text in warnings:
            if text not in self.logged:
                log.warning("%s", text)
                self.logged.add(text)
        self.observe(epoch, where)
        return warnings + self.alarms


def new_epoch() -> bytes:
    """A random epoch for a database that has none yet."""
    return secrets.token_hex(8).encode()


def _claim(client: redis.Redis) -> bytes:
    """The marker's value, set to a new random epoch first if it is missing."""
    fresh = new_epoch()
    try:
        # SET NX GET (Redis 7): one step, so two processes claiming at once agree on the value.
        return _epoch_of(client.set(MARKER_KEY, fresh, nx=True, get=True), fresh)
    except redis.ResponseError:  # Redis 6.2 refuses NX with GET: two steps, same outcome
        client.set(MARKER_KEY, fresh, nx=True)
        return _epoch_of(client.get(MARKER_KEY), fresh)


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


async def claim_async(client: redis.asyncio.Redis) -> bytes:
    """``_claim`` for the asyncio client (the same two steps on Redis 6.2)."""
    fresh = new_epoch()
    try:
        return _epoch_of(await client.set(MARKER_KEY, fresh, nx=True, get=True), fresh)
    except redis.ResponseError:
        await client.set(MARKER_KEY, fresh, nx=True)
        return _epoch_of(await client.get(MARKER_KEY), fresh)


async def rdb_saves_async(client: redis.asyncio.Redis) -> bool:
    """``_rdb_saves`` for the asyncio client."""
    try:
        return _snapshots_set(await client.config_get("save"))
    except redis.ResponseError:
        return True


def _rdb_saves(client: redis.Redis) -> bool:
    try:
        return _snapshots_set(client.config_get("save"))
    except redis.ResponseError:
        return True  # CONFIG GET denied (ACL): assume the operator set snapshots up


def _snapshots_set(config: Mapping[Any, Any]) -> bool:
    """Whether ``CONFIG GET save`` answered with a snapshot schedule (``save ''``: none)."""
    return bool(str(config.get("save", "")).strip())
