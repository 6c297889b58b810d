"""``JobPutter``: the producer's role. It puts jobs and follows them by id.

Delivery contract of this role (every backend, proven by ``services.testing.contract``):

* **At least once.** ``put`` returns only once the body is stored (memory: while the process tree
  lives; redis: in Redis). Failure raises ``BackendUnavailableError`` or ``QueueFullError``;
  nothing is ever dropped silently.
* **Put-if-absent by job id, within a queue.** A put of an id that is queued, delayed,
  running, waiting for a retry, or finished within the result TTL *on the same queue* stores
  nothing and reports the id as present. So a put whose reply was lost is retried (by the
  backend, and safely by any caller) with the same id and stored at most once.
  ``BackendUnavailableError`` from a put means "not confirmed": the job may or may not be
  stored; putting the same id again never makes a duplicate. Ids are promised unique per
  queue only: the same caller-chosen id may be stored on two queues (Redis keeps each queue
  under its own hash tag, so it never looks across queues; the memory backend happens to
  refuse it). Generated ids (``new_job_id``) are random, hence unique everywhere. ``status``,
  ``wait_finished`` and ``cancel`` find an id on any queue; if two queues hold it, the first
  in sorted order answers.
* **Unique keys, within a queue** (``put_unique``): while a job holding a key is queued,
  delayed, running or waiting for a retry, a put with that key stores nothing and answers the
  holder's id; at most one job per key is held, however many producers race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.protocol.records import JobStatus


@runtime_checkable
class JobPutter(Protocol):
    """Puts jobs on queues and follows them by id (a producer)."""

    def put(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> bool:
        """Store one job unless its id is present; with ``delay_s > 0`` it becomes visible after
        that many seconds. Returns False when the id was present (nothing stored).

        ``new_ids``: the caller generated these ids just now and never put them before: the
        backend may skip looking for them among running and finished jobs (a repeat within the
        call, or of a waiting marker, is still caught)."""

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store ``(job_id, body)`` pairs in one batch (one round trip where the backend can);
        one flag per item, False where the id was present and nothing was stored. An id
        repeated within the batch is stored once: its first item wins, the others are False.
        ``new_ids`` as in ``put``."""

    def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        """Store one job holding the unique ``key`` on ``queue`` unless a job that holds it is
        queued, delayed, running or waiting for a retry; returns the id holding the key
        (``job_id`` when this call stored the job, else the holder's: nothing stored).

        A holder that finished (done or dead, cancelled included) or is unknown holds
        nothing: the new job is stored and takes the key. With ``ttl_s`` the key lapses that
        many seconds after it was taken, even if its holder lives. Put-if-absent by id holds
        too: a ``job_id`` already present is not stored again (its id is returned), so a put
        whose reply was lost is repeated safely with the same id and key."""

    def status(self, job_id: str) -> JobStatus | None:
        """What is known of ``job_id``, or None when nothing is (never seen, or expired)."""

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block (without busy polling) until ``job_id`` is done or dead; None on timeout."""

    def close(self) -> None:
        """Release the connection."""
