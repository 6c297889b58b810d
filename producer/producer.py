"""``Producer``: turns calls into encoded jobs and puts them on a queue.

With a registry, a job name that is not registered or arguments that do not fit the function's
signature are rejected here, at enqueue, instead of failing later in a worker. Encoding happens
before the backend sees anything, so an argument that is not JSON fails synchronously too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.codec import decode_value, encode_job
from services.errors import JobNotFinishedError
from services.job import DEFAULT_QUEUE, Job
from services.jobqueue import JobQueue, JobStatus
from services.registry import Registry

JobCall = tuple[str, Sequence[Any], Mapping[str, Any]]
"""``(job_name, args, kwargs)``: one call to enqueue, as feeds yield them."""


class Producer:
    """Enqueues jobs on ``queue``; checks them against ``registry`` when one is given."""

    def __init__(
        self, queue: JobQueue, *, registry: Registry | None = None, name: str = DEFAULT_QUEUE
    ) -> None:
        self._queue = queue
        self._registry = registry
        self.queue_name = name

    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> Job:
        """Put one job on the queue and return it (its ``id`` finds it later).

        Raises:
            UnknownJobError: the registry has no job ``name``.
            JobArgumentsError: the arguments do not fit the job function.
            EncodeError: an argument is not JSON-serialisable.
            QueueFullError, BackendUnavailableError: the job was not enqueued.
        """
        return self._enqueue(name, args, kwargs, delay_s=0.0)

    def enqueue_in(self, delay_s: float, name: str, *args: Any, **kwargs: Any) -> Job:
        """Like ``enqueue``, but the job becomes runnable after ``delay_s`` seconds."""
        return self._enqueue(name, args, kwargs, delay_s=max(0.0, delay_s))

    def enqueue_at(self, when: datetime, name: str, *args: Any, **kwargs: Any) -> Job:
        """Like ``enqueue``, but the job becomes runnable at ``when`` (naive means UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay_s = when.timestamp() - time.time()
        return self._enqueue(name, args, kwargs, delay_s=max(0.0, delay_s))

    def enqueue_many(self, calls: Iterable[JobCall]) -> list[Job]:
        """Check and encode every call first, then put them all in one batch."""
        jobs = [self._build(name, tuple(args), dict(kwargs)) for name, args, kwargs in calls]
        if jobs:
            items = [(job.id, encode_job(job)) for job in jobs]
            self._queue.put_many(self.queue_name, items)
        return jobs

    def status(self, job_id: str) -> JobStatus | None:
        """What the backend knows of ``job_id`` (status, attempts, error, result)."""
        return self._queue.status(job_id)

    def result(self, job_id: str, *, timeout: float = 30.0) -> Any:
        """Wait for ``job_id`` to finish and return its decoded return value.

        Raises:
            JobNotFinishedError: the job was not done within ``timeout`` seconds, or it was
                dead-lettered (the message says which, with the error).
        """
        found = self._queue.wait_finished(job_id, timeout)
        if found is None:
            raise JobNotFinishedError(f"job {job_id} did not finish within {timeout:g} s")
        if found.status != "done":
            raise JobNotFinishedError(f"job {job_id} is {found.status}: {found.error}")
        return None if found.result is None else decode_value(found.result, what="result")

    def _enqueue(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, delay_s: float
    ) -> Job:
        job = self._build(name, args, kwargs)
        self._queue.put(self.queue_name, job.id, encode_job(job), delay_s=delay_s)
        return job

    def _build(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        if self._registry is not None:
            self._registry.get(name).check_arguments(args, kwargs)
        return Job(name=name, args=args, kwargs=kwargs, queue=self.queue_name)
