"""``Producer``: turns calls into encoded jobs and puts them on a queue.

With a registry, a job name that is not registered or arguments that do not fit the function's
signature are rejected here, at enqueue, instead of failing later in a worker. Encoding happens
before the backend sees anything, so an argument that is not JSON fails synchronously too.

A caller may choose a job's id (``job_id=``). Backends put if absent: enqueueing an id that is
already queued, scheduled, running, waiting for a retry, or finished within the result TTL
stores nothing. So an enqueue that failed with ``BackendUnavailableError`` (not confirmed) is
safely repeated with the same ``job_id``: the job is stored at most once.

A *unique* job (``@registry.job(unique=True)``/``unique_for=``, or any call given a
``unique_key``) is stored only if no job holding its key (``services.unique_keys``) is queued,
delayed, running or waiting for a retry on the queue; otherwise the ``Job`` returned carries
the holder's id.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.codec import decode_value, encode_job
from services.errors import BackendUnavailableError, JobNotFinishedError
from services.job import DEFAULT_QUEUE, Job
from services.names import check_job_id, check_queue_name
from services.protocol import JobPutter, JobStatus
from services.registry import Registry
from services.unique_keys import Uniqueness, uniqueness

JobCall = tuple[str, Sequence[Any], Mapping[str, Any]]
"""``(job_name, args, kwargs)``: one call to enqueue, as feeds yield them."""
IdentifiedJobCall = tuple[str, Sequence[Any], Mapping[str, Any], str | None]
"""``(job_name, args, kwargs, job_id)``: a call with the id the caller chose (None: generated)."""


class Producer:
    """Enqueues jobs on the queue ``name``; checks them against ``registry`` when one is given.

    Raises:
        InvalidNameError: ``name`` is not a valid queue name (``services.names``).
    """

    def __init__(
        self, queue: JobPutter, *, registry: Registry | None = None, name: str = DEFAULT_QUEUE
    ) -> None:
        self._queue = queue
        self._registry = registry
        self.queue_name = check_queue_name(name)

    def enqueue(
        self,
        name: str,
        *args: Any,
        job_id: str | None = None,
        unique_key: str | None = None,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> Job:
        """Put one job on the queue and return it (its ``id`` finds it later).

        With ``job_id``, the job gets that id, and is stored only if the backend does not hold
        it already (queued, scheduled, running, waiting for a retry, or finished within the
        result TTL). If it does, nothing is stored and the returned ``Job`` carries that id but
        this call's name and arguments, not necessarily those of the job that will run.
        (``job_id`` is taken by Conveyor: pass a job argument of that name via ``enqueue_many``.)

        With ``unique_key``, or for a job registered ``unique``, nothing is stored while a job
        holding the same key (the caller's, else the job's name and arguments) is queued,
        delayed, running or waiting for a retry: the returned ``Job`` carries that job's id.

        With ``timeout_s``, the job is stopped after that many seconds of running, whatever the
        registry's ``timeout=`` or the worker's ``--job-timeout`` (on ``rq+redis://``: RQ's
        ``job_timeout``, which ``rq worker`` honours too).

        Raises:
            InvalidNameError: ``job_id`` breaks the rules of ``services.names``; nothing sent.
            UnknownJobError: the registry has no job ``name``; nothing sent.
            JobArgumentsError: the arguments do not fit the job function; nothing sent.
            EncodeError: an argument is not JSON-serialisable; nothing sent.
            QueueFullError: the queue stayed full for ``put_timeout_s``; nothing stored.
            BackendUnavailableError: the backend did not confirm the put: the job may or may
                not be stored. Enqueueing again with the same ``job_id`` is safe and stores it
                at most once; without a ``job_id`` of your own, the id is in the error's notes.
        """
        if job_id is None and unique_key is None and timeout_s is None:
            return self._enqueue(name, args, kwargs, ids=_NO_IDS, delay_s=0.0)
        ids = _Ids(job_id, unique_key, timeout_s)
        return self._enqueue(name, args, kwargs, ids=ids, delay_s=0.0)

    def enqueue_in(
        self,
        delay_s: float,
        name: str,
        *args: Any,
        job_id: str | None = None,
        unique_key: str | None = None,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> Job:
        """Like ``enqueue``, but the job becomes runnable after ``delay_s`` seconds."""
        ids = _Ids(job_id, unique_key, timeout_s)
        return self._enqueue(name, args, kwargs, ids=ids, delay_s=max(0.0, delay_s))

    def enqueue_at(
        self,
        when: datetime,
        name: str,
        *args: Any,
        job_id: str | None = None,
        unique_key: str | None = None,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> Job:
        """Like ``enqueue``, but the job becomes runnable at ``when`` (naive means UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay_s = when.timestamp() - time.time()
        ids = _Ids(job_id, unique_key, timeout_s)
        return self._enqueue(name, args, kwargs, ids=ids, delay_s=max(0.0, delay_s))

    def enqueue_many(self, calls: Iterable[JobCall | IdentifiedJobCall]) -> list[Job]:
        """Check and encode every call first, then put them all in one batch.

        Each call is ``(name, args, kwargs)`` or ``(name, args, kwargs, job_id)``; ids are put
        if absent as in ``enqueue``, one by one (a repeated id is stored once). Raises what
        ``enqueue`` raises; until the put, a bad call means none of the batch is sent. Jobs
        registered ``unique`` are put one by one (``enqueue``'s rule), the others in batches.
        """
        unpacked = [_unpack(call) for call in calls]
        jobs = [self._build(*call) for call in unpacked]
        unique = [uniqueness(self._registry, c[0], (c[1], c[2]), None) for c in unpacked]
        if any(found is not None for found in unique):
            return self._put_in_order(jobs, unique)
        if jobs:
            items = [(job.id, encode_job(job)) for job in jobs]
            # Ids generated here were never put: the backend may check less (``new_ids``).
            new_ids = all(call[3] is None for call in unpacked)
            self._queue.put_many(self.queue_name, items, new_ids=new_ids)
        return jobs

    def _put_in_order(self, jobs: list[Job], unique: list[Uniqueness | None]) -> list[Job]:
        """A batch holding unique jobs: each run of plain jobs in one batch, each unique job
        on its own (``put_unique``), in order; the jobs as put (unique ones with the holder's
        id)."""
        bodies = [encode_job(job) for job in jobs]  # every job encodes before anything is sent
        out: list[Job] = []
        plain: list[tuple[str, bytes]] = []
        for job, body, found in zip(jobs, bodies, unique, strict=True):
            if found is None:
                plain.append((job.id, body))
                out.append(job)
                continue
            if plain:
                self._queue.put_many(self.queue_name, plain)
                plain = []
            out.append(self._put_unique(job, body, found, 0.0))
        if plain:
            self._queue.put_many(self.queue_name, plain)
        return out

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
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        ids: _Ids,
        delay_s: float,
    ) -> Job:
        job = self._build(name, args, kwargs, ids.job_id, timeout_s=ids.timeout_s)
        unique = uniqueness(self._registry, name, (args, kwargs), ids.unique_key)
        try:
            body = encode_job(job)
            if unique is not None:
                return self._put_unique(job, body, unique, delay_s)
            fresh = ids.job_id is None
            self._queue.put(self.queue_name, job.id, body, delay_s=delay_s, new_ids=fresh)
        except BackendUnavailableError as exc:
            exc.add_note(f"job id {job.id}: enqueue it again with job_id={job.id!r}")
            raise
        return job

    def _put_unique(self, job: Job, body: bytes, unique: Uniqueness, delay_s: float) -> Job:
        """Put ``job`` holding ``unique.key``; the job, or one with the holder's id."""
        holder = self._queue.put_unique(
            self.queue_name, job.id, body, key=unique.key, ttl_s=unique.ttl_s, delay_s=delay_s
        )
        return job if holder == job.id else dataclasses.replace(job, id=holder)

    def _build(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        job_id: str | None,
        *,
        timeout_s: float | None = None,
    ) -> Job:
        checked = None if job_id is None else check_job_id(job_id)
        args, kwargs = tuple(args), dict(kwargs)  # the job's own (a tuple is not copied)
        if self._registry is not None:
            self._registry.get(name).check_arguments(args, kwargs)
        queue = self.queue_name
        if checked is None:
            return Job(name=name, args=args, kwargs=kwargs, queue=queue, timeout_s=timeout_s)
        return Job(name=name, args=args, kwargs=kwargs, queue=queue, id=checked,
                   timeout_s=timeout_s)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Ids:
    """The ids a call chose: its job's (None: generated) and its unique key (None: the spec's);
    and its own timeout (None: none)."""

    job_id: str | None
    unique_key: str | None
    timeout_s: float | None = None


_NO_IDS = _Ids(None, None)
"""A call that chose nothing (most do): shared, as an ``_Ids`` costs a microsecond."""


def _unpack(
    call: JobCall | IdentifiedJobCall,
) -> tuple[str, Sequence[Any], Mapping[str, Any], str | None]:
    """``(name, args, kwargs, job_id)`` of a call with or without its id."""
    if len(call) == 4:
        return call
    name, args, kwargs = call
    return name, args, kwargs, None
