"""The roles of the queue protocol for code on an asyncio event loop (``conveyor serve``).

Same contract as the blocking roles, clause for clause (``putting``: at least once,
put-if-absent by job id within a queue; ``inspection``: counts are the backend's, queues are
known by their puts, revive starts afresh, cancel ends a waiting job in one terminal state);
only the calling convention differs: every call that reaches the backend is a coroutine, and
none blocks the event loop. Which backend answers is chosen by URL
(``services.backends.open_async_queue``); only backends that live outside the process have one
(not ``memory://``).

    role                  what the HTTP service does with it
    --------------------  --------------------------------------------------------------
    AsyncJobPutter        POST jobs (one or a batch), GET a job's status
    AsyncQueueInspector   GET queues and their counts, dead letters; readiness (check_server)
    AsyncQueueAdmin       requeue (revive) and delete dead letters, cancel a waiting job,
                          abort a running one
    AsyncBackend          all of them, and ``aclose``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.protocol.records import Cancellation, DeadLetter, JobStatus, QueueCounts


@runtime_checkable
class AsyncJobPutter(Protocol):
    """Puts jobs on queues and follows them by id, from an event loop."""

    async def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store ``(job_id, body)`` pairs whose ids are absent; one flag per item (False: the
        id was present, nothing stored). As ``JobPutter.put_many``; a backend may send the
        puts of concurrent callers together, in one round trip."""

    async def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        """Store one job holding the unique ``key`` unless a live job holds it; the id holding
        the key. As ``JobPutter.put_unique``."""

    async def status(self, job_id: str) -> JobStatus | None:
        """What is known of ``job_id``, or None when nothing is (never seen, or expired)."""


@runtime_checkable
class AsyncQueueInspector(Protocol):
    """Reads queues, dead letters and the backend's health, from an event loop."""

    async def queues(self) -> list[str]:
        """The names of the queues jobs were put on, sorted."""

    async def counts_many(self, queues: Sequence[str]) -> list[QueueCounts]:
        """The counts of each of ``queues`` (``QueueInspector.counts``), in one round trip."""

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue``, newest first."""

    async def check_server(self) -> list[str]:
        """Ask the backend now: warnings about its setup, then this connection's alarms.

        Raises ``BackendUnavailableError`` when it does not answer.
        """

    def alarms(self) -> list[str]:
        """Serious events this connection has seen (e.g. "Redis restarted empty"), oldest
        first; sticky, so readiness keeps showing them. No round trip."""


@runtime_checkable
class AsyncQueueAdmin(Protocol):
    """Changes an operator may make: dead letters back to work or gone, waiting jobs ended."""

    async def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on ``queue`` as fresh attempts."""

    async def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Drop dead letters (all, or those ids) of ``queue``; returns how many."""

    async def cancel(self, job_id: str) -> Cancellation:
        """End ``job_id`` as dead ("cancelled") if it waits; else leave it and say why."""

    async def abort(self, job_id: str) -> Cancellation:
        """As ``QueueAdmin.abort``: cancel it if it waits, ask its consumer to stop it if it
        runs, else leave it and say why."""


@runtime_checkable
class AsyncBackend(AsyncJobPutter, AsyncQueueInspector, AsyncQueueAdmin, Protocol):
    """A connection to one backend for one event loop: every asyncio role."""

    async def aclose(self) -> None:
        """Release the connections (on the loop that used them)."""
