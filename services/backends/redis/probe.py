"""What ``conveyor bench`` reads from a Redis server around a benchmark, and its ``incr`` job.

A probe is a plain client beside the backend, never part of it: it reads ``INFO`` (memory in
use, commands processed) so a benchmark can report bytes and Redis commands per job, and it
runs one ``INCR`` for the benchmark's ``incr`` job kind (the same work the comparison harness
gives every peer, so no system can skip a job).
"""

from __future__ import annotations

from typing import Any

from services.backends import redact_url
from services.backends.redis.connection import command, guarded, make_client


class RedisProbe:
    """A client on ``url`` for figures about the server; connects on its first command."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._client = make_client(url, timeout_s=timeout_s)
        self._where = redact_url(url)

    def incr(self, key: str) -> int:
        with guarded("incr", self._where):
            return int(command(self._client, "INCR", key))

    def read_int(self, key: str) -> int:
        with guarded("read", self._where):
            value = command(self._client, "GET", key)
        return int(value) if value is not None else 0

    def used_memory(self) -> int:
        """``used_memory`` of ``INFO memory``: bytes the server holds for data and overhead."""
        return int(self._info("memory")["used_memory"])

    def commands_processed(self) -> int:
        """``total_commands_processed`` of ``INFO stats`` (this probe's own reads count too)."""
        return int(self._info("stats")["total_commands_processed"])

    def delete(self, *names: str) -> None:
        with guarded("delete", self._where):
            command(self._client, "DEL", *names)

    def close(self) -> None:
        self._client.close()

    def _info(self, section: str) -> dict[str, Any]:
        with guarded("info", self._where):
            info: dict[str, Any] = self._client.info(section)
        return info


def open_url(url: str) -> RedisProbe:
    """The probe factory's entry point (``services.backends.open_probe``)."""
    return RedisProbe(url)
