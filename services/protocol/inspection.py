"""``QueueInspector`` and ``QueueAdmin``: cheap reads and administration (status, dead letters,
cancelling, aborting).

Delivery contract of these roles (every backend, proven by ``services.testing.contract``):

* **Counts are the backend's.** ``counts`` reports jobs waiting, delayed and in flight now, and
  the running totals of jobs settled done or dead, as the backend recorded them: a job counts
  once it is settled in the backend, never before. It is one cheap read: code that needs a
  number asks ``counts`` (or ``depth``), never lists jobs or dead letters to count them.
* **Queues are known by their puts.** ``queues`` names every queue a job was put on (the
  backend registers the name at put time), sorted; an unused name is not listed.
* **Revive starts afresh.** ``revive`` puts dead letters back as fresh attempts of the same ids.
  ``delete_dead`` drops dead letters for good; neither changes the dead total.
* **Cancel ends a waiting job in one terminal state.** ``cancel`` takes a job that waits (queued,
  delayed, or waiting for a retry) out of the queue in one atomic step: it is never delivered,
  its status becomes dead with the error ``"cancelled"`` (its attempts as they were), and it
  counts once in the queue's dead total and no longer as waiting or delayed. It is not a dead
  letter (there is nothing to revive: its owner cancelled it). A job that is running,
  finished or unknown is left alone, and the answer says which.
* **Abort reaches running jobs.** ``abort`` cancels a waiting job as ``cancel`` does; for a
  running one it records an abort request and answers ``cancelled=True`` with the status
  ``running``. The consumer that runs it learns of it through ``JobTaker.aborted`` and settles
  it dead, its error starting with ``"aborted"`` (a dead letter, never retried). A request
  outlives a crash of that consumer (the job redelivered is aborted in turn) and lapses once
  the job has left the backend's hands (done or dead). A finished or unknown job is left alone:
  too late.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.protocol.records import Cancellation, DeadLetter, JobStatus, QueueCounts

CANCELLED = "cancelled"
"""The error of a job that ``cancel`` ended (its status is ``dead``)."""
ABORTED = "aborted"
"""How the error of a job that ``abort`` stopped while it ran begins (its status is ``dead``)."""


@runtime_checkable
class QueueInspector(Protocol):
    """Reads a queue's numbers, its dead letters and a job's status, without changing them."""

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed)."""

    def counts(self, queue: str) -> QueueCounts:
        """``queue``'s numbers in one cheap read (no listing of jobs or dead letters)."""

    def queues(self) -> list[str]:
        """The names of the queues jobs were put on, sorted."""

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
class QueueGauges(Protocol):
    """Two gauges for ``conveyor status`` beyond the counts (``services.gauges``)."""

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Seconds since the job at the head of ``queue`` was enqueued (by its producer's
        clock); None when nothing waits. One cheap read of the head, no listing."""

    def done_rate(self, queue: str, window_s: float = 60.0) -> float | None:
        """Jobs settled done per second in ``queue`` over about the last ``window_s``, from
        the samples earlier calls left (this call adds one); None when none is old enough."""


@runtime_checkable
class QueueAdmin(Protocol):
    """Changes what an operator may change by hand: dead letters, waiting jobs."""

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on ``queue`` as fresh attempts."""

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Drop dead letters (all, or those ids) of ``queue``; returns how many."""

    def cancel(self, job_id: str) -> Cancellation:
        """End ``job_id`` as dead ("cancelled") if it waits; else leave it and say why."""

    def abort(self, job_id: str) -> Cancellation:
        """``cancel`` a waiting ``job_id``; ask its consumer to stop it if it runs (then
        ``cancelled`` is True and ``status`` says running); else leave it and say why."""
