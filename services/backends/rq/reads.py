"""Reads and administration on RQ's data: statuses, counts, failed jobs, cancelling.

Statuses come from the job hash (``Job.get_status``), results from RQ's ``Result`` records,
dead letters from the ``FailedJobRegistry`` (``exc_info`` is the reason), counts from the
queue list and the registries plus Conveyor's running totals (``settling.counts_key``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from redis import Redis
from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.queue import Queue
from rq.registry import (
    CanceledJobRegistry,
    FailedJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import Serializer

from services.backends.rq.mapping import (
    ATTEMPT,
    ENQUEUED,
    NOT_ALLOWED,
    body_of,
    conveyor_status,
    scheduled_key,
    text,
    unreadable,
)
from services.backends.rq.settling import counts_key
from services.codec import encode_value
from services.errors import EncodeError
from services.gauges import RING_SIZE, rate_from, should_sample
from services.protocol import CANCELLED, Cancellation, DeadLetter, JobStatus, QueueCounts


class RqReads:
    """Reads and administration on one connection, with one serializer."""

    def __init__(self, connection: Redis, serializer: Serializer) -> None:
        self._redis = connection
        self._serializer = serializer

    def _fetch(self, job_id: str) -> RqJob | None:
        return RqJob.fetch_many([job_id], connection=self._redis, serializer=self._serializer)[0]

    def status(self, job_id: str) -> JobStatus | None:
        """What RQ knows of ``job_id``, in Conveyor's terms; attempts are the runs that
        ended, which RQ counts as the job's ``Result`` records."""
        job = self._fetch(job_id)
        if job is None:
            return None
        rq_status = job.get_status(refresh=False)
        status = conveyor_status(rq_status, job.meta or {})
        attempts = Result.count(job)
        if rq_status == RqStatus.CANCELED:
            return JobStatus(job_id, "dead", attempts, CANCELLED)
        if status == "done":
            return JobStatus(job_id, status, attempts, None, self._result(job))
        if status in ("dead", "failed"):
            return JobStatus(job_id, status, attempts, _error(job))
        return JobStatus(job_id, status, attempts)

    def _result(self, job: RqJob) -> bytes | None:
        if unreadable(job) is not None:
            return None
        try:
            value = job.return_value()
            return None if value is None else encode_value(value, what="return value")
        except (EncodeError, ValueError):
            return None

    def counts(self, queue: str) -> QueueCounts:
        """``queue``'s numbers: list length, scheduled and started registries, totals."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.llen(Queue(queue, connection=self._redis).key)
        pipe.zcard(scheduled_key(queue))
        pipe.zcard(StartedJobRegistry(queue, connection=self._redis).key)
        pipe.hmget(counts_key(queue), ["done", "dead"])
        waiting, delayed, running, (done, dead) = pipe.execute()
        return QueueCounts(waiting, delayed, running, int(done or 0), int(dead or 0))

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Seconds since the job at the head of ``queue`` was enqueued (by its producer)."""
        head = self._redis.lindex(Queue(queue, connection=self._redis).key, 0)
        job = None if head is None else self._fetch(text(head))
        if job is None:
            return None
        meta = job.meta or {}
        stamp = meta.get(ENQUEUED) or (job.enqueued_at or job.created_at).timestamp()
        return max(0.0, time.time() - float(stamp))

    def done_rate(self, queue: str, window_s: float) -> float | None:
        """Jobs done per second over ``window_s``, from a ring of samples of the done total
        (``cv:rq:{<queue>}:r``, as the Redis backend keeps one)."""
        ring = f"cv:rq:{{{queue}}}:r"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(counts_key(queue), "done")
        pipe.lrange(ring, 0, -1)
        done_raw, raw = pipe.execute()
        now, done = time.time(), int(done_raw or 0)
        samples = [(float(t), int(n)) for t, n in (text(item).split(":") for item in raw)]
        if should_sample(samples, now):
            pipe.lpush(ring, f"{now}:{done}")
            pipe.ltrim(ring, 0, RING_SIZE - 1)
            pipe.expire(ring, 86_400)
            pipe.execute()
        return rate_from(samples, now, done, window_s)

    def queues(self) -> list[str]:
        """RQ's registered queues (``rq:queues``), sorted."""
        return sorted(queue.name for queue in Queue.all(connection=self._redis))

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest jobs of ``queue``'s ``FailedJobRegistry``, newest first."""
        registry = FailedJobRegistry(queue, connection=self._redis, serializer=self._serializer)
        ids = registry.get_job_ids(0, limit - 1, desc=True, cleanup=False)
        jobs = RqJob.fetch_many(ids, connection=self._redis, serializer=self._serializer)
        return [_letter(job, queue) for job in jobs if job is not None]

    def revive(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Requeue failed jobs (all, or ``job_ids``) as fresh attempts (RQ's ``requeue``)."""
        registry = FailedJobRegistry(queue, connection=self._redis, serializer=self._serializer)
        ids = registry.get_job_ids(cleanup=False) if job_ids is None else list(job_ids)
        revived = 0
        for job_id in ids:
            job = self._fetch(job_id)
            if job is None or job_id not in registry.get_job_ids(cleanup=False):
                continue
            job.meta.pop(ATTEMPT, None)
            self._redis.hset(job.key, "meta", self._serializer.dumps(job.meta))
            registry.requeue(job_id)
            revived += 1
        return revived

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Delete failed jobs (all, or ``job_ids``) and their records."""
        registry = FailedJobRegistry(queue, connection=self._redis, serializer=self._serializer)
        ids = registry.get_job_ids(cleanup=False) if job_ids is None else list(job_ids)
        deleted = 0
        for job_id in ids:
            if self._redis.zrem(registry.key, job_id):
                self._redis.delete(RqJob.key_for(job_id))
                deleted += 1
        return deleted

    def cancel(self, job_id: str) -> Cancellation:
        """Take a waiting job out of its queue (``LREM``) or the scheduled registry (``ZREM``)
        and mark it canceled (``CanceledJobRegistry``); else say why not."""
        job = self._fetch(job_id)
        if job is None:
            return Cancellation(job_id, cancelled=False)
        queue = job.origin
        removed = self._redis.lrem(Queue(queue, connection=self._redis).key, 0, job_id)
        if not removed:
            removed = self._redis.zrem(scheduled_key(queue), job_id)
        if not removed:
            return Cancellation(job_id, cancelled=False, status=self.status(job_id))
        pipe = self._redis.pipeline()
        job.set_status(RqStatus.CANCELED, pipeline=pipe)
        CanceledJobRegistry(queue, connection=self._redis).add(job, pipeline=pipe)
        pipe.hincrby(counts_key(queue), "dead", 1)
        pipe.execute()
        return Cancellation(job_id, cancelled=True)


def _letter(job: RqJob, queue: str) -> DeadLetter:
    readable = unreadable(job) is None
    try:
        body = body_of(job) if readable else b""
    except EncodeError:
        body = b""
    ended = job.ended_at or datetime.now(UTC)
    reason = (_error(job) or "").removeprefix(f"{NOT_ALLOWED}: ")  # as the worker gave it
    return DeadLetter(job.id, queue, body, reason, ended.timestamp())


def _error(job: RqJob) -> str | None:
    """The latest failure's text (RQ's ``Result.exc_string``; ``job.exc_info`` is deprecated)."""
    result = job.latest_result()
    return None if result is None else result.exc_string
