"""Reads and administration on RQ's data: statuses, counts, failed jobs, cancelling.

Statuses come from the job hash (``Job.get_status``), results from RQ's ``Result`` records,
dead letters from the ``FailedJobRegistry`` (``exc_info`` is the reason), counts from the
queue list and the registries plus Conveyor's running totals (``settling.counts_key``).
"""

from __future__ import annotations

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
from rq.serializers import Serializer

from services.backends.rq.mapping import (
    ATTEMPT,
    body_of,
    conveyor_status,
    scheduled_key,
    unreadable,
)
from services.backends.rq.settling import counts_key
from services.codec import encode_value
from services.errors import EncodeError
from services.protocol import CANCELLED, Cancellation, DeadLetter, JobStatus, QueueCounts


class RqReads:
    """Reads and administration on one connection, with one serializer."""

    def __init__(self, connection: Redis, serializer: Serializer) -> None:
        self._redis = connection
        self._serializer = serializer

    def _fetch(self, job_id: str) -> RqJob | None:
        return RqJob.fetch_many([job_id], connection=self._redis, serializer=self._serializer)[0]

    def status(self, job_id: str) -> JobStatus | None:
        """What RQ knows of ``job_id``, in Conveyor's terms."""
        job = self._fetch(job_id)
        if job is None:
            return None
        meta = job.meta or {}
        rq_status = job.get_status(refresh=False)
        status = conveyor_status(rq_status, meta)
        attempt = int(meta.get(ATTEMPT, 0))
        if rq_status == RqStatus.CANCELED:
            return JobStatus(job_id, "dead", attempt, CANCELLED)
        if status == "done":
            return JobStatus(job_id, status, attempt + 1, None, self._result(job))
        if status == "dead":
            return JobStatus(job_id, status, attempt + 1, job.exc_info)
        if status == "failed":
            return JobStatus(job_id, status, attempt, job.exc_info)
        return JobStatus(job_id, status, attempt)

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
    return DeadLetter(job.id, queue, body, job.exc_info or "", ended.timestamp())
