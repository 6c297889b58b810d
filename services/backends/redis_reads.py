"""The read side of the Redis backend: depth, status, waiting for a job, dead letters.

Kept apart from the state changes in ``redis_queue``; the only write here is ``requeue_dead``,
one script like every other state change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from services.backends import redis_keys as keys
from services.backends import redis_scripts as lua
from services.backends.redis_conn import command, guarded
from services.jobqueue import DeadLetter, JobStatus

BLOCK_CHUNK_S = 1.0
"""Longest single blocking wait; also bounds how late a delayed job can be noticed."""


class Reader:
    """Queries on one Redis database (the base of ``RedisQueue``)."""

    def __init__(self, client: redis.Redis, blocking: redis.Redis, where: str) -> None:
        self._client = client
        self._blocking = blocking
        self.where = where
        self._requeue = client.register_script(lua.REQUEUE_DEAD)

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed)."""
        with guarded("depth", self.where):
            return int(self._client.llen(keys.queue_key(queue)))

    def stats(self) -> dict[str, int]:
        """Backend counters: ``fenced`` (late settlements rejected), ``recovered``, ..."""
        with guarded("stats", self.where):
            raw = self._client.hgetall(keys.STATS_KEY)
        return {_text(name): int(value) for name, value in raw.items()}

    def status(self, job_id: str) -> JobStatus | None:
        """Done/dead (with result or reason), running, failed (retry pending), else None."""
        with guarded("status", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.lindex(keys.done_key(job_id), 0)
            pipe.hexists(keys.RUNNING_KEY, keys.id_key(job_id))
            pipe.get(keys.failed_key(job_id))
            done, running, failed = pipe.execute()
        if done is not None:
            return _status(job_id, done)
        if failed is None:
            return JobStatus(job_id, "running") if running else None
        record = keys.parse_status(failed)
        state = "running" if running else record.state
        return JobStatus(job_id, state, record.attempts, record.error)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block until ``job_id`` is done or dead, or ``timeout_s`` passes (then None).

        ``BLMOVE k k LEFT LEFT`` on the one-item record list wakes when the record is pushed
        and returns it without taking it away, so any number of waiters see it.
        """
        key = keys.done_key(job_id)
        deadline = time.monotonic() + timeout_s
        while True:
            wait_s = min(deadline - time.monotonic(), BLOCK_CHUNK_S)
            with guarded("wait_finished", self.where):
                if wait_s < 0.001:
                    record = command(self._client, "LINDEX", key, 0)
                else:
                    # Fractional timeouts are fine for Redis >= 6; redis-py types them as int.
                    wait = round(wait_s, 3)
                    record = command(self._blocking, "BLMOVE", key, key, "LEFT", "LEFT", wait)
            if record is not None:
                return _status(job_id, record)
            if time.monotonic() >= deadline:
                return None

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue``, newest first."""
        if limit < 1:
            return []
        with guarded("dead_letters", self.where):
            rows = command(
                self._client, "ZREVRANGE", keys.dead_key(queue), 0, limit - 1, "WITHSCORES"
            )
        letters = []
        for member, score in zip(rows[::2], rows[1::2], strict=True):
            reason, element = keys.parse_dead(member)
            letters.append(
                DeadLetter(
                    element.job_id, queue, element.body, reason, failed_at=float(score) / 1000
                )
            )
        return letters

    def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back at the end of ``queue``, crash count 0."""
        with guarded("requeue_dead", self.where):
            members: list[bytes] = []
            if job_ids is not None:
                wanted = set(job_ids)
                if not wanted:
                    return 0
                every: list[bytes] = command(self._client, "ZRANGE", keys.dead_key(queue), 0, -1)
                members = [m for m in every if keys.parse_dead(m)[1].job_id in wanted]
                if not members:
                    return 0
            return int(self._requeue(args=[keys.PREFIX, queue, *members]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _status(job_id: str, raw: bytes) -> JobStatus:
    record = keys.parse_status(raw)
    return JobStatus(job_id, record.state, record.attempts, record.error, record.result)
