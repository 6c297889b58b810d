"""``QueueInspector`` and ``QueueAdmin``: cheap reads and administration (status, dead letters).

Delivery contract of these roles (every backend, proven by ``services.testing.contract``):

* **Counts are the backend's.** ``counts`` reports jobs waiting, delayed and in flight now, and
  the running totals of jobs settled done or dead, as the backend recorded them: a job counts
  once it is settled in the backend, never before. It is one cheap read: code that needs a
  number asks ``counts`` (or ``depth``), never lists jobs or dead letters to count them.
* **Revive starts afresh.** ``revive`` puts dead letters back as fresh attempts of the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.protocol.records import DeadLetter, JobStatus, QueueCounts


@runtime_checkable
class QueueInspector(Protocol):
    """Reads a queue's numbers, its dead letters and a job's status, without changing them."""

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed)."""

    def counts(self, queue: str) -> QueueCounts:
        """``queue``'s numbers in one cheap read (no listing of jobs or dead letters)."""

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue``, newest first."""

    def status(self, job_id: str) -> JobStatus | None:
        """What is known of ``job_id``, or None when nothing is (never seen, or expired)."""

    def alarms(self) -> list[str]:
        """Serious events this connection has seen (e.g. "Redis restarted empty: ..."), oldest
        first; sticky for the life of the connection, so health and status keep showing them."""

    def close(self) -> None:
        """Release the connection."""


@runtime_checkable
class QueueAdmin(Protocol):
    """Changes what an operator may change by hand: dead letters back to work."""

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on ``queue`` as fresh attempts."""
