"""Checks that a Redis server can keep jobs safely, and that it did not lose them.

A queue needs ``maxmemory-policy noeviction`` (any other policy may evict queued jobs under
memory pressure) and some persistence (AOF or RDB snapshots), else a restart loses every job.
A Redis that restarted empty is recognised by two facts together: its ``run_id`` changed
since we last looked, and the marker key that we set in the database is gone. Without this
check a worker would see empty queues and report a clean drain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from services.backends.redis_keys import MARKER_KEY

log = logging.getLogger("conveyor.redis")


@dataclass
class ServerWatch:
    """What we remember of the server between checks (its run id)."""

    run_id: str | None = None

    def check(self, client: redis.Redis, where: str) -> list[str]:
        """Warnings about ``client``'s server; logs them too (errors for lost data)."""
        info = client.info()
        warnings = _config_warnings(client, info, where)
        for text in warnings:
            log.warning("%s", text)
        lost = self._lost_data(client, str(info.get("run_id", "")), where)
        if lost:
            log.error("%s", lost)
            warnings.append(lost)
        return warnings

    def _lost_data(self, client: redis.Redis, run_id: str, where: str) -> str | None:
        previous, self.run_id = self.run_id, run_id
        if client.set(MARKER_KEY, run_id, nx=True) is None:
            return None  # the marker survived: whatever restarted kept its data
        if previous is None:
            return None  # first look at a fresh database: nothing to compare with
        if previous != run_id:
            return (
                f"Redis at {where} restarted EMPTY (run_id {previous[:8]} -> {run_id[:8]}, "
                "queue marker gone): queued and in-flight jobs were lost"
            )
        return f"Redis at {where} lost the queue marker: the database was flushed"


def _config_warnings(client: redis.Redis, info: dict[str, object], where: str) -> list[str]:
    warnings = []
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != "noeviction":
        warnings.append(
            f"Redis at {where} has maxmemory-policy {policy}: it may evict queued jobs; "
            "set noeviction"
        )
    if not info.get("aof_enabled") and not _rdb_saves(client):
        warnings.append(
            f"Redis at {where} has no persistence (appendonly no, save ''): "
            "a restart loses every job"
        )
    return warnings


def _rdb_saves(client: redis.Redis) -> bool:
    try:
        save = client.config_get("save").get("save", "")
    except redis.ResponseError:
        return True  # CONFIG GET denied (ACL): assume the operator set snapshots up
    return bool(str(save).strip())
