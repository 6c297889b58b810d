"""State changes of a running RQ job, the way RQ's own worker makes them.

Every change starts with a **claim**: ``ZREM`` of the execution's entry in the queue's
``StartedJobRegistry``. Exactly one party wins it (the consumer settling the job, or a live
consumer recovering it after its holder's lease lapsed), so a job is settled once: a
settlement whose claim fails was fenced (someone else took the job back).

After the claim, the writes are RQ's: ``Job._handle_success`` (status, ``Result``,
``FinishedJobRegistry``), ``Job._handle_failure`` (``FailedJobRegistry`` with the traceback as
``exc_info``, a failure ``Result``), ``Queue.enqueue_job``/``schedule_job`` for retries and hand
backs, and the execution's own records removed. Conveyor's running totals (``done``, ``dead``)
are a hash beside them, ``cv:rq:{<queue>}:n``, since RQ's registries expire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.executions import Execution
from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.queue import Queue
from rq.results import Result
from rq.serializers import Serializer
from rq.utils import current_timestamp, utcformat

from services.backends.rq.mapping import ATTEMPT, REDELIVERIES, finished_key, started_key

DEFAULT_FAILURE_TTL_S = 365 * 24 * 3600
"""RQ's own default for how long a failed job is kept (``rq.defaults``)."""


def counts_key(queue: str) -> str:
    """Conveyor's running totals for an RQ queue (fields ``done``, ``dead``)."""
    return f"cv:rq:{{{queue}}}:n"


@dataclass
class Held:
    """One RQ job this consumer took: the job, its execution, the receipt it was given."""

    job: RqJob
    execution: Execution

    @property
    def receipt(self) -> str:
        """The started registry's entry: ``<job id>:<execution id>``."""
        return str(self.execution.composite_key)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Settler:
    """Claims and settles RQ executions on one connection, as worker ``worker_name``."""

    def __init__(self, connection: Redis, serializer: Serializer, worker_name: str) -> None:
        self.connection = connection
        self._serializer = serializer
        self.worker_name = worker_name
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        """RQ's queue ``name`` on this connection, with this backend's serializer."""
        found = self._queues.get(name)
        if found is None:
            found = self._queues[name] = Queue(
                name, connection=self.connection, serializer=self._serializer
            )
        return found

    def claim(self, held: Sequence[Held]) -> list[bool]:
        """Take each execution out of its started registry; True where this call did."""
        if not held:
            return []
        pipe = self.connection.pipeline(transaction=False)
        for one in held:
            pipe.zrem(started_key(one.job.origin), one.receipt)
        return [bool(removed) for removed in pipe.execute()]

    def finish(self, done: Sequence[tuple[Held, Any]], *, default_ttl_s: float) -> None:
        """Record claimed jobs as finished with their return values, as RQ's worker does:
        status and ``ended_at`` on the job hash, a ``Result``, ``FinishedJobRegistry``, the
        job's expiry at its result TTL. Only the fields that change are written (RQ's
        ``Job._handle_success`` saves the whole job again: twice the commands per job)."""
        pipe = self.connection.pipeline()
        totals: dict[str, int] = {}
        ended = _utcnow()
        for held, value in done:
            job = held.job
            job.ended_at = ended
            ttl = job.get_result_ttl(int(default_ttl_s))
            pipe.hset(
                job.key, mapping={"status": RqStatus.FINISHED.value, "ended_at": utcformat(ended)}
            )
            Result.create(
                job,
                Result.Type.SUCCESSFUL,
                ttl,
                return_value=value,
                pipeline=pipe,
                **self._execution_fields(held),
            )
            if ttl != 0:
                expiry = ttl if ttl < 0 else current_timestamp() + ttl
                pipe.zadd(finished_key(job.origin), {job.id: expiry})
            job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
            self._end(held, pipe)
            totals[job.origin] = totals.get(job.origin, 0) + 1
        for queue, count in totals.items():
            pipe.hincrby(counts_key(queue), "done", count)
        pipe.execute()

    def fail(self, held: Held, text: str) -> None:
        """Record a claimed job as failed: ``FailedJobRegistry`` with ``text`` as exc_info."""
        pipe = self.connection.pipeline()
        self.fail_in(pipe, held, text)
        pipe.execute()

    def fail_in(self, pipe: Pipeline, held: Held, text: str) -> None:
        """``fail``'s writes, queued on ``pipe``."""
        job = held.job
        job.ended_at = _utcnow()
        job.set_status(RqStatus.FAILED, pipeline=pipe)
        if job.failure_ttl is None:
            job.failure_ttl = DEFAULT_FAILURE_TTL_S
        job._handle_failure(text, pipe, **self._execution_fields(held))
        self._end(held, pipe)
        pipe.hincrby(counts_key(job.origin), "dead", 1)

    def again(self, held: Held, *, attempt: int, delay_s: float, error: str) -> None:
        """Put a claimed job back for its next attempt, after ``delay_s`` (RQ's scheduler,
        or a Conveyor consumer, moves it to the queue when due); ``error`` becomes a failure
        ``Result``, which RQ shows as the job's ``exc_info`` meanwhile."""
        job = held.job
        job.meta[ATTEMPT] = attempt
        pipe = self.connection.pipeline()
        if job.retries_left is not None:
            pipe.hset(job.key, "retries_left", job.retries_left)
        job.ended_at = _utcnow()
        ttl = DEFAULT_FAILURE_TTL_S if job.failure_ttl is None else job.failure_ttl
        Result.create_failure(job, ttl, error, pipeline=pipe, **self._execution_fields(held))
        self._requeue(pipe, held, delay_s=delay_s, at_front=False)
        pipe.execute()

    def hand_back(self, held: Held, *, crashed: bool = False) -> None:
        """Put a claimed job back at the front of its queue; ``crashed`` counts a redelivery."""
        if crashed:
            held.job.meta[REDELIVERIES] = int(held.job.meta.get(REDELIVERIES, 0)) + 1
        pipe = self.connection.pipeline()
        self._requeue(pipe, held, delay_s=0.0, at_front=True)
        pipe.execute()

    def _requeue(self, pipe: Pipeline, held: Held, *, delay_s: float, at_front: bool) -> None:
        job = held.job
        pipe.hset(job.key, "meta", self._serializer.dumps(job.meta))
        self._end(held, pipe)
        queue = self.queue(job.origin)
        if delay_s > 0:
            job.set_status(RqStatus.SCHEDULED, pipeline=pipe)
            queue.schedule_job(job, _utcnow() + timedelta(seconds=delay_s), pipeline=pipe)
        else:
            job.set_status(RqStatus.QUEUED, pipeline=pipe)
            pipe.hset(job.key, "worker_name", "")
            queue.push_job_id(job.id, pipeline=pipe, at_front=at_front)

    def _end(self, held: Held, pipe: Pipeline) -> None:
        """Remove the execution's records: the started registry's entry (a repeat of the
        claim, for a caller that did not claim) and the worker's execution index."""
        pipe.zrem(started_key(held.job.origin), held.receipt)
        pipe.srem(held.execution.worker_executions_key, held.receipt)

    def _execution_fields(self, held: Held) -> dict[str, Any]:
        return {
            "worker_name": self.worker_name,
            "execution_id": held.execution.id,
            "execution_started_at": held.execution.created_at,
            "execution_ended_at": held.job.ended_at,
        }
