"""The read side of the Redis backend: depth, counts, status, waiting for a job, dead letters.

``RedisQueue`` (``queue``) holds a ``Reader`` on its clients and delegates these calls to it;
the state changes stay there. The only write here is ``revive``, a script like every other
state change (in capped calls, see ``call_many``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.connection import command, guarded
from services.protocol import DeadLetter, JobStatus, QueueCounts

BLOCK_CHUNK_S = 1.0
"""Longest single blocking wait; also bounds how late a delayed job can be noticed."""
REQUEUE_CAP = 100
"""Most dead letters one REQUEUE_DEAD call moves."""


def call_many(
    client: redis.Redis, script: Script, what: str, where: str, calls: Sequence[Sequence[Any]]
) -> list[Any]:
    """Several calls of ``script`` in one pipeline (one round trip); their replies in order.

    A call that found the script missing (Redis restarted, SCRIPT FLUSH) is run again on its
    own, and only that one: the others ran, and must not run twice.
    """
    with guarded(what, where):
        pipe = client.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(script.sha, 0, keys.PREFIX, *args)
        replies = pipe.execute(raise_on_error=False)
    out = []
    for args, reply in zip(calls, replies, strict=True):
        if isinstance(reply, redis.exceptions.NoScriptError):
            with guarded(what, where):
                out.append(script(args=[keys.PREFIX, *args]))
            continue
        if isinstance(reply, Exception):
            with guarded(what, where):
                raise reply
        out.append(reply)
    return out


class Reader:
    """Queries on one Redis database (held by ``RedisQueue``, on its clients)."""

    def __init__(self, client: redis.Redis, blocking: redis.Redis, where: str) -> None:
        self._client = client
        self._blocking = blocking
        self.where = where
        self._requeue = client.register_script(lua.REQUEUE_DEAD)

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed)."""
        with guarded("depth", self.where):
            return int(self._client.llen(keys.queue_key(queue)))

    def counts(self, queue: str) -> QueueCounts:
        """Waiting, delayed, in flight, done and dead for ``queue``, in one round trip."""
        with guarded("counts", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.llen(keys.queue_key(queue))
            pipe.zcard(keys.delayed_key(queue))
            pipe.hmget(keys.counts_key(queue), ["inflight", "done", "dead"])
            waiting, delayed, (inflight, done, dead) = pipe.execute()
        return QueueCounts(
            waiting=int(waiting),
            delayed=int(delayed),
            in_flight=int(inflight or 0),
            done=int(done or 0),
            dead=int(dead or 0),
        )

    def stats(self) -> dict[str, int]:
        """Backend counters: ``fenced`` (late settlements rejected), ``recovered``, ..."""
        with guarded("stats", self.where):
            raw = self._client.hgetall(keys.STATS_KEY)
        return {_text(name): int(value) for name, value in raw.items()}

    def status(self, job_id: str) -> JobStatus | None:
        """Done/dead (with result or reason), running, failed (retry pending), queued,
        scheduled (delayed), else None."""
        bucket, field = keys.marker_at(job_id)
        with guarded("status", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.lindex(keys.done_key(job_id), 0)
            pipe.hexists(keys.RUNNING_KEY, keys.id_key(job_id))
            pipe.get(keys.failed_key(job_id))
            pipe.hget(bucket, field)
            done, running, failed, marker = pipe.execute()
        if done is not None:
            return _status(job_id, done)
        waiting = keys.marker_state(marker)
        if failed is None:
            if running:
                return JobStatus(job_id, "running")
            return JobStatus(job_id, waiting) if waiting else None
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

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back at the end of ``queue``, crash count 0.

        Malformed ones stay dead (they would only die again).
        """
        wanted = None if job_ids is None else set(job_ids)
        if wanted is not None and not wanted:
            return 0
        with guarded("revive", self.where):
            every: list[bytes] = command(self._client, "ZRANGE", keys.dead_key(queue), 0, -1)
        members = [m for m in every if wanted is None or keys.parse_dead(m)[1].job_id in wanted]
        calls = [
            (queue, *members[i : i + REQUEUE_CAP]) for i in range(0, len(members), REQUEUE_CAP)
        ]
        if not calls:
            return 0
        replies = call_many(self._client, self._requeue, "revive", self.where, calls)
        return sum(int(reply) for reply in replies)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _status(job_id: str, raw: bytes) -> JobStatus:
    record = keys.parse_status(raw)
    return JobStatus(job_id, record.state, record.attempts, record.error, record.result)
