"""What the memory backend knows of each job id: the status behind ``status`` and put-if-absent.

Two books, because they live by different rules:

* **held** jobs (queued, scheduled, running, failed and waiting for a retry) are kept for as long
  as the backend holds the job, however long that is: a put of such an id must store nothing;
* **finished** jobs (done, dead) are kept for ``result_ttl_s`` after they finished, and at most
  ``MAX_FINISHED`` of them (the oldest go first): within that, a put of the id stores nothing.

Not thread-safe: ``MemoryState`` calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from services.jobqueue import JobStatus

MAX_FINISHED = 100_000
"""Finished ids remembered at most; beyond, the oldest are forgotten before their TTL."""
FINISHED = frozenset({"done", "dead"})
_ATTEMPTS = frozenset({"done", "failed", "dead"})
"""Statuses that end an attempt (each counts one)."""


class Statuses:
    """Job statuses by id: held jobs until they finish, finished ones for the result TTL."""

    def __init__(self, result_ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = result_ttl_s
        self._clock = clock
        self._held: dict[str, JobStatus] = {}
        self._finished: OrderedDict[str, tuple[float, JobStatus]] = OrderedDict()

    def present(self, job_id: str) -> bool:
        """Whether a put of ``job_id`` must store nothing (held, or finished within the TTL)."""
        return job_id in self._held or self._finished_status(job_id) is not None

    def held(self, job_id: str) -> bool:
        """Whether the backend holds ``job_id`` (waiting, scheduled, in flight, retrying)."""
        return job_id in self._held

    def get(self, job_id: str) -> JobStatus | None:
        """The status of ``job_id``; None if unknown, or with a TTL of 0 (no status kept)."""
        if self._ttl_s <= 0:
            return None
        return self._held.get(job_id) or self._finished_status(job_id)

    def set(
        self, job_id: str, status: str, *, error: str | None = None, result: bytes | None = None
    ) -> None:
        """Record ``status``; attempts and the last error carry over from the previous one."""
        old = self._held.pop(job_id, None)
        if old is None:
            old = self._finished_status(job_id)
            self._finished.pop(job_id, None)
        attempts = (old.attempts if old else 0) + (status in _ATTEMPTS)
        if error is None and old is not None and status != "done":
            error = old.error
        new = JobStatus(job_id, status, attempts, error, result)
        if status not in FINISHED:
            self._held[job_id] = new
        elif self._ttl_s > 0:
            self._finished[job_id] = (self._clock(), new)
            while len(self._finished) > MAX_FINISHED:
                self._finished.popitem(last=False)

    def _finished_status(self, job_id: str) -> JobStatus | None:
        self._expire()
        found = self._finished.get(job_id)
        return None if found is None else found[1]

    def _expire(self) -> None:
        # Entries are appended as jobs finish, so the oldest stand first.
        now = self._clock()
        while self._finished:
            finished_at, _ = next(iter(self._finished.values()))
            if now - finished_at < self._ttl_s:
                return
            self._finished.popitem(last=False)
