"""``JobService``: every operation of the HTTP API as a coroutine on an ``AsyncBackend``.

Framework-free: the routes (``routes``) parse requests into the records here and render what
comes back; this module decides. Errors leave as Conveyor's own (``services.errors``) or as
``problems.ApiProblem``s, which ``problems.problem_of`` turns into statuses.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from producer.http.problems import JobNotFound, NotCancellable, NotFound, NotReady
from producer.http.submission import Encoded, JobAsked, Submission
from services.codec import decode_job, decode_value
from services.errors import BackendUnavailableError, ConfigError, DecodeError
from services.names import check_job_id, check_queue_name
from services.protocol import AsyncBackend, DeadLetter, QueueCounts
from services.registry import Registry
from services.unique_keys import Uniqueness

log = logging.getLogger("conveyor.serve")

READY_TIMEOUT_S = 2.0
"""Longest a readiness check waits for the backend (a health checker gives up soon too)."""


class Submitted(NamedTuple):
    """A job the service put: its id, and whether this request stored it (False: the id was
    present already, stored by an earlier request with the same key or id)."""

    job_id: str
    new: bool


@dataclass(frozen=True)
class JobView:
    """A job's status as the API shows it, its result decoded from JSON."""

    job_id: str
    status: str
    attempts: int
    error: str | None
    result: Any


@dataclass(frozen=True)
class LetterView:
    """A dead letter as the API shows it: the job it held, when readable."""

    letter: DeadLetter
    job: str | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None


@dataclass(frozen=True)
class Readiness:
    """Whether the service can do its work now, why not, and what is unsafe but working."""

    ready: bool
    reasons: list[str]
    warnings: list[str]


Enqueued = Callable[[str, str, int], None]
"""Told ``(queue, job name, count)`` of the jobs a request stored (new ones only), once the
backend accepted them: where a metrics counter plugs in (``conveyor_jobs_enqueued_total``)."""


class JobService:
    """The API's operations on one backend, checking jobs against ``registry`` if given, and
    telling ``on_enqueued`` what was stored."""

    def __init__(
        self,
        backend: AsyncBackend,
        *,
        registry: Registry | None = None,
        max_batch: int = 10_000,
        on_enqueued: Enqueued | None = None,
    ) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._submission = Submission(registry)
        self._on_enqueued = on_enqueued

    async def submit(
        self,
        queue: str,
        request: JobAsked,
        *,
        delay_s: float = 0.0,
        key: str | None = None,
        unique_key: str | None = None,
    ) -> Submitted:
        """Check, encode and put one job (put-if-absent by id: see ``submission``; a unique
        job is stored only if no live job holds its key: ``services.unique_keys``)."""
        job = self._submission.encode_one(queue, request, key)
        unique = self._submission.uniqueness(request, unique_key)
        return await self._put_one(queue, request, job, unique, delay_s)

    async def submit_batch(
        self,
        queue: str,
        requests: Sequence[JobAsked],
        *,
        delay_s: float = 0.0,
        key: str | None = None,
    ) -> list[Submitted]:
        """Check and encode every job, then put them all; any invalid job: none is put."""
        jobs = self._submission.encode_batch(queue, requests, key)
        unique = [self._submission.uniqueness(request, None) for request in requests]
        if any(found is not None for found in unique):
            return await self._put_in_order(queue, requests, jobs, unique, delay_s)
        flags = await self._put(queue, jobs, delay_s)
        if self._on_enqueued is not None:
            stored = Counter(r.job for r, new in zip(requests, flags, strict=True) if new)
            for name, count in stored.items():
                self._on_enqueued(queue, name, count)
        return [Submitted(job.job_id, new) for job, new in zip(jobs, flags, strict=True)]

    async def _put_in_order(
        self,
        queue: str,
        requests: Sequence[JobAsked],
        jobs: Sequence[Encoded],
        unique: Sequence[Uniqueness | None],
        delay_s: float,
    ) -> list[Submitted]:
        """A batch holding jobs registered unique: one put per job, in order (each unique one
        stored only if its key is free, answered with the holder's id)."""
        return [
            await self._put_one(queue, request, job, found, delay_s)
            for request, job, found in zip(requests, jobs, unique, strict=True)
        ]

    async def _put_one(
        self,
        queue: str,
        request: JobAsked,
        job: Encoded,
        unique: Uniqueness | None,
        delay_s: float,
    ) -> Submitted:
        """Put one job, unique or not; tell ``on_enqueued`` if it was stored."""
        if unique is None:
            [new] = await self._put(queue, [job], delay_s)
            holder = job.job_id
        else:
            holder = await self.backend.put_unique(
                queue, job.job_id, job.body, key=unique.key, ttl_s=unique.ttl_s, delay_s=delay_s
            )
            new = holder == job.job_id
        if new and self._on_enqueued is not None:
            self._on_enqueued(queue, request.job, 1)
        return Submitted(holder, new)

    async def _put(self, queue: str, jobs: Sequence[Encoded], delay_s: float) -> list[bool]:
        items = [(job.job_id, job.body) for job in jobs]
        fresh = all(job.generated for job in jobs)
        try:
            return await self.backend.put_many(queue, items, delay_s=delay_s, new_ids=fresh)
        except BackendUnavailableError as exc:
            if fresh:  # the client cannot retry safely without knowing the ids
                exc.add_note("retry with an Idempotency-Key to be sure nothing is put twice")
            raise

    async def job(self, job_id: str) -> JobView:
        """The status of ``job_id``, its result decoded; ``JobNotFound`` when unknown."""
        found = await self.backend.status(check_job_id(job_id))
        if found is None:
            raise JobNotFound(f"no job {job_id!r} (never put, or its status expired)")
        result = None
        if found.result is not None:
            try:
                result = decode_value(found.result, what="result")
            except DecodeError:
                log.warning("job %s has a result that is not JSON", job_id)
        return JobView(found.job_id, found.status, found.attempts, found.error, result)

    async def cancel(self, job_id: str) -> None:
        """End ``job_id`` (dead, "cancelled") if it waits; else ``NotCancellable`` saying its
        status, or ``JobNotFound``."""
        outcome = await self.backend.cancel(check_job_id(job_id))
        if outcome.cancelled:
            return
        if outcome.status is None:
            raise JobNotFound(f"no job {job_id!r} (never put, or its status expired)")
        state = outcome.status.status
        raise NotCancellable(
            f"job {job_id!r} is {state}: only a job that waits (queued, scheduled, or "
            "waiting for a retry) can be cancelled",
            details={"status": state, "error": outcome.status.error},
        )

    async def abort(self, job_id: str) -> str:
        """End ``job_id``: cancel it if it waits ("dead"), else ask its worker to stop it
        ("running": it ends dead, "aborted ...", within about a second). ``NotCancellable``
        when it already finished, ``JobNotFound`` when unknown."""
        outcome = await self.backend.abort(check_job_id(job_id))
        if outcome.cancelled:
            running = outcome.status is not None and outcome.status.status == "running"
            return "running" if running else "dead"
        if outcome.status is None:
            raise JobNotFound(f"no job {job_id!r} (never put, or its status expired)")
        state = outcome.status.status
        raise NotCancellable(
            f"job {job_id!r} is {state}: too late to abort",
            details={"status": state, "error": outcome.status.error},
        )

    async def queue_counts(
        self, queues: Sequence[str] | None = None
    ) -> list[tuple[str, QueueCounts]]:
        """Each queue's counts: those named (checked), else every queue jobs were put on."""
        names = [check_queue_name(q) for q in queues] if queues else await self.backend.queues()
        return list(zip(names, await self.backend.counts_many(names), strict=True))

    async def dead_letters(self, queue: str, limit: int) -> list[LetterView]:
        """The newest dead letters of ``queue``, each with its job when that is readable."""
        letters = await self.backend.dead_letters(check_queue_name(queue), limit=limit)
        return [_letter_view(letter) for letter in letters]

    async def requeue(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Revive dead letters of ``queue`` (all, or those ids); how many."""
        ids = None if job_ids is None else [check_job_id(j) for j in job_ids]
        return await self.backend.revive(check_queue_name(queue), ids)

    async def delete_dead(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Drop dead letters of ``queue`` (all, or those ids); how many."""
        ids = None if job_ids is None else [check_job_id(j) for j in job_ids]
        return await self.backend.delete_dead(check_queue_name(queue), ids)

    async def delete_letter(self, queue: str, job_id: str) -> None:
        """Drop the dead letter of ``job_id``; ``NotFound`` when ``queue`` has none."""
        if not await self.delete_dead(queue, [job_id]):
            raise NotFound(f"queue {queue!r} has no dead letter of job {job_id!r}")

    async def readiness(self) -> Readiness:
        """Ready when the backend answers within ``READY_TIMEOUT_S`` and has raised no alarm
        (such as "Redis restarted empty": jobs were lost); setup warnings do not count."""
        try:
            found = await asyncio.wait_for(self.backend.check_server(), READY_TIMEOUT_S)
        except (BackendUnavailableError, ConfigError) as exc:
            return Readiness(False, [str(exc)], [])
        except TimeoutError:
            reason = f"the backend did not answer within {READY_TIMEOUT_S:g} s"
            return Readiness(False, [reason], [])
        alarms = self.backend.alarms()
        return Readiness(not alarms, alarms, [text for text in found if text not in alarms])

    async def start(self) -> None:
        """Check the backend once before serving: refused credentials or ACL stop the service
        (``ConfigError``); an unreachable backend is only logged (readiness will say so)."""
        try:  # the check logs the server's setup warnings, once
            await asyncio.wait_for(self.backend.check_server(), READY_TIMEOUT_S)
        except (BackendUnavailableError, TimeoutError) as exc:
            log.warning("the backend does not answer yet (%s); serving, /readyz says 503", exc)

    async def close(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()

    async def ready_or_raise(self) -> Readiness:
        """``readiness``, raising ``NotReady`` (503) with the reasons when not ready."""
        state = await self.readiness()
        if not state.ready:
            raise NotReady("; ".join(state.reasons), details={"reasons": state.reasons})
        return state


def _letter_view(letter: DeadLetter) -> LetterView:
    try:
        job = decode_job(letter.body)
    except DecodeError:
        return LetterView(letter, None, None, None)
    return LetterView(letter, job.name, list(job.args), dict(job.kwargs))
