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
from collections.abc import Callable, Iterable

from services.protocol import JobStatus

MAX_FINISHED = 100_000
"""Finished ids remembered at most; beyond, the oldest are forgotten before their TTL."""
FINISHED = frozenset({"done", "dead"})
WAITING = frozenset({"queued", "scheduled", "failed"})
"""Statuses of jobs the backend holds that are not running (``failed``: waiting for a retry)."""
_ATTEMPTS = frozenset({"done", "failed", "dead"})
"""Statuses that end an attempt (each counts one)."""


class Statuses:
    """Job statuses by id: held jobs until they finish, finished ones for the result TTL."""

    def __init__(self, result_ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = result_ttl_s
        self._clock = clock
        self._held: dict[str, tuple[str, int, str | None]] = {}
        """``(status, attempts, error)`` by id: plain tuples, cheaper than records on the hot
        path; ``get`` makes the record."""
        self._finished: OrderedDict[str, tuple[float, JobStatus]] = OrderedDict()

    def absent(self, job_ids: Iterable[str]) -> list[bool]:
        """Per id: whether a put of it may store it (not held, not finished within the TTL,
        not earlier in ``job_ids``)."""
        self._expire()
        held, finished = self._held, self._finished
        seen: set[str] = set()
        flags = []
        for job_id in job_ids:
            flags.append(job_id not in held and job_id not in finished and job_id not in seen)
            seen.add(job_id)
        return flags

    def held(self, job_id: str) -> bool:
        """Whether the backend holds ``job_id`` (waiting, scheduled, in flight, retrying)."""
        return job_id in self._held

    def state(self, job_id: str) -> str | None:
        """The status of a held job (whatever the TTL); None when the job is not held."""
        held = self._held.get(job_id)
        return None if held is None else held[0]

    def get(self, job_id: str) -> JobStatus | None:
        """The status of ``job_id``; None if unknown, or with a TTL of 0 (no status kept)."""
        if self._ttl_s <= 0:
            return None
        held = self._held.get(job_id)
        if held is None:
            return self._finished_status(job_id)
        return JobStatus(job_id, *held)

    def add(self, job_ids: Iterable[str], status: str) -> None:
        """Record the first status of absent ids (a put): no attempts, no error yet."""
        entry = (status, 0, None)
        self._held.update((job_id, entry) for job_id in job_ids)

    def set(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        result: bytes | None = None,
        attempted: bool = True,
    ) -> None:
        """Record ``status``; attempts and the last error carry over from the previous one.

        ``attempted=False``: the job did not run to reach it (cancelled), attempts stay.
        """
        held = self._held.pop(job_id, None)
        if held is not None:
            _, attempts, old_error = held
        else:
            old = self._finished_status(job_id)
            self._finished.pop(job_id, None)
            attempts, old_error = (0, None) if old is None else (old.attempts, old.error)
        attempts += attempted and status in _ATTEMPTS
        if error is None and status != "done":
            error = old_error
        if status not in FINISHED:
            self._held[job_id] = (status, attempts, error)
        elif self._ttl_s > 0:
            new = JobStatus(job_id, status, attempts, error, result)
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
