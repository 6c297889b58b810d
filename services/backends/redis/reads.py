"""The read side of the Redis backend: depth, counts, queues, status, waiting for a job, dead
letters.

``RedisQueue`` (``queue``) holds a ``Reader`` on its clients and delegates these calls to it;
the state changes stay there. The only writes here are on dead letters: ``revive``, a script
like every other state change (in capped calls, see ``call_many``), and ``delete_dead``, one
``ZREM`` per capped call.

Counts and depth leave out cancelled jobs that still sit in a list or delayed set (``xq`` and
``xd``, see ``keys``, "Cancelling"); ``counts_from`` turns the raw replies into numbers, for
the asyncio backend (``aio``) too.
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
from services.gauges import RING_SIZE, Sample, enqueued_at, rate_from, should_sample
from services.protocol import DeadLetter, JobStatus, QueueCounts

BLOCK_CHUNK_S = 1.0
"""Longest single blocking wait; also bounds how late a delayed job can be noticed."""
RATE_KEY_TTL_S = 86_400
"""A queue's done samples (``cv:r:<queue>``) go when no reader looked for a day."""
REQUEUE_CAP = 100
"""Most dead letters one REQUEUE_DEAD call moves (or one ``ZREM`` drops)."""


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
        """How many jobs wait in ``queue`` (not in flight, not delayed, not cancelled)."""
        with guarded("depth", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.llen(keys.queue_key(queue))
            pipe.hget(keys.counts_key(queue), "xq")
            waiting, cancelled = pipe.execute()
        return int(waiting) - int(cancelled or 0)

    def counts(self, queue: str) -> QueueCounts:
        """Waiting, delayed, in flight, done and dead for ``queue``, in one round trip."""
        with guarded("counts", self.where):
            pipe = self._client.pipeline(transaction=False)
            add_counts(pipe, queue)
            return counts_from(pipe.execute())

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Seconds since the head of ``queue`` (``LINDEX 0``: FIFO from the left) was enqueued.

        A cancelled job still at the head (a tombstone FETCH has not dropped yet) counts.
        """
        with guarded("oldest_waiting_age", self.where):
            head = command(self._client, "LINDEX", keys.queue_key(queue), 0)
        stamp = None if head is None else enqueued_at(keys.unpack_element(head).body)
        return None if stamp is None else max(0.0, time.time() - stamp)

    def done_rate(self, queue: str, window_s: float) -> float | None:
        """Jobs done per second over ``window_s`` from the ring ``cv:r:<queue>`` (Redis clock).

        Two callers at once may both add a sample: harmless, the ring only gets denser.
        """
        key = f"{keys.PREFIX}r:{queue}"
        with guarded("done_rate", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            pipe.hget(keys.counts_key(queue), "done")
            pipe.lrange(key, 0, -1)
            (seconds, micros), done_raw, raw = pipe.execute()
            now, done = seconds + micros / 1e6, int(done_raw or 0)
            samples = [_sample(item) for item in raw]
            if should_sample(samples, now):
                pipe.lpush(key, f"{now}:{done}")
                pipe.ltrim(key, 0, RING_SIZE - 1)
                pipe.expire(key, RATE_KEY_TTL_S)
                pipe.execute()
        return rate_from(samples, now, done, window_s)

    def queues(self) -> list[str]:
        """The queues jobs were put on (registered in ``cv:queues``), sorted."""
        with guarded("queues", self.where):
            return sorted(_text(name) for name in self._client.hkeys(keys.QUEUES_KEY))

    def stats(self) -> dict[str, int]:
        """Backend counters: ``fenced`` (late settlements rejected), ``recovered``, ..."""
        with guarded("stats", self.where):
            raw = self._client.hgetall(keys.STATS_KEY)
        return {_text(name): int(value) for name, value in raw.items()}

    def status(self, job_id: str) -> JobStatus | None:
        """Done/dead (with result or reason), running, failed (retry pending), queued,
        scheduled (delayed), else None."""
        with guarded("status", self.where):
            pipe = self._client.pipeline(transaction=False)
            add_status(pipe, job_id)
            return status_from(job_id, pipe.execute())

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
            rows = command(self._client, *newest_letters(queue, limit))
        return letters_from(queue, rows)

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back at the end of ``queue``, crash count 0.

        Malformed ones stay dead (they would only die again).
        """
        members = self._dead_members("revive", queue, job_ids)
        calls = [(queue, *chunk) for chunk in capped(members)]
        if not calls:
            return 0
        replies = call_many(self._client, self._requeue, "revive", self.where, calls)
        return sum(int(reply) for reply in replies)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Drop dead letters (all, or those ids) of ``queue``; returns how many."""
        members = self._dead_members("delete_dead", queue, job_ids)
        if not members:
            return 0
        key = keys.dead_key(queue)
        with guarded("delete_dead", self.where):
            pipe = self._client.pipeline(transaction=False)
            for chunk in capped(members):
                pipe.zrem(key, *chunk)
            return sum(int(n) for n in pipe.execute())

    def _dead_members(self, what: str, queue: str, job_ids: Sequence[str] | None) -> list[bytes]:
        """The members of ``queue``'s dead letters (all, or those of ``job_ids``)."""
        if job_ids is not None and not job_ids:
            return []
        with guarded(what, self.where):
            every: list[bytes] = command(self._client, "ZRANGE", keys.dead_key(queue), 0, -1)
        return chosen_members(every, job_ids)


def add_counts(pipe: Any, queue: str) -> None:
    """Queue the reads ``counts_from`` turns into ``queue``'s counts (sync or asyncio pipe)."""
    pipe.llen(keys.queue_key(queue))
    pipe.zcard(keys.delayed_key(queue))
    pipe.hmget(keys.counts_key(queue), ["inflight", "done", "dead", "xq", "xd"])


def counts_from(replies: Sequence[Any]) -> QueueCounts:
    """The counts of one queue from the replies of the reads ``add_counts`` queued."""
    waiting, delayed, (inflight, done, dead, xq, xd) = replies
    return QueueCounts(
        waiting=int(waiting) - int(xq or 0),
        delayed=int(delayed) - int(xd or 0),
        in_flight=int(inflight or 0),
        done=int(done or 0),
        dead=int(dead or 0),
    )


def capped(members: Sequence[bytes]) -> list[Sequence[bytes]]:
    """``members`` cut into runs of at most ``REQUEUE_CAP`` (one script call or command each)."""
    return [members[i : i + REQUEUE_CAP] for i in range(0, len(members), REQUEUE_CAP)]


def chosen_members(every: Sequence[bytes], job_ids: Sequence[str] | None) -> list[bytes]:
    """The dead-letter members of ``every`` whose job id is in ``job_ids`` (None: all)."""
    if job_ids is None:
        return list(every)
    wanted = set(job_ids)
    return [m for m in every if keys.parse_dead(m)[1].job_id in wanted]


def add_status(pipe: Any, job_id: str) -> None:
    """Queue the reads ``status_from`` turns into ``job_id``'s status (sync or asyncio pipe)."""
    bucket, field = keys.marker_at(job_id)
    pipe.lindex(keys.done_key(job_id), 0)
    pipe.hexists(keys.RUNNING_KEY, keys.id_key(job_id))
    pipe.get(keys.failed_key(job_id))
    pipe.hget(bucket, field)


def status_from(job_id: str, replies: Sequence[Any]) -> JobStatus | None:
    """Done/dead (with result or reason), running, failed (retry pending), queued,
    scheduled (delayed), else None: from the replies of the reads ``add_status`` queued."""
    done, running, failed, marker = replies
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


def newest_letters(queue: str, limit: int) -> tuple[Any, ...]:
    """The command that reads ``queue``'s ``limit`` newest dead letters (``letters_from``)."""
    return ("ZREVRANGE", keys.dead_key(queue), 0, limit - 1, "WITHSCORES")


def letters_from(queue: str, rows: Sequence[Any]) -> list[DeadLetter]:
    """Dead letters from the reply of ``newest_letters``'s command, newest first."""
    letters = []
    for member, score in zip(rows[::2], rows[1::2], strict=True):
        reason, element = keys.parse_dead(member)
        letters.append(
            DeadLetter(element.job_id, queue, element.body, reason, failed_at=float(score) / 1000)
        )
    return letters


def _sample(item: bytes) -> Sample:
    taken_at, total = item.split(b":")
    return float(taken_at), int(total)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _status(job_id: str, raw: bytes) -> JobStatus:
    record = keys.parse_status(raw)
    return JobStatus(job_id, record.state, record.attempts, record.error, record.result)
