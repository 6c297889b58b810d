"""The memory backend's abort requests: ids of running jobs an operator asked to stop.

A request stays while the backend holds the job (running, or back in a queue after its consumer
died, so the next run is aborted too) and lapses once the job is finished (done or dead); the
consumers' ``aborted`` checks prune it. Not thread-safe: ``MemoryState`` calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class AbortRequests:
    """Job ids whose running should stop."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def add(self, job_id: str) -> None:
        """Ask whoever runs ``job_id`` to stop it."""
        self._ids.add(job_id)

    def pick(self, job_ids: Iterable[str], *, held: Callable[[str], bool]) -> set[str]:
        """Those of ``job_ids`` with a request; requests of jobs no longer ``held`` lapse."""
        if not self._ids:
            return set()
        self._ids = {job_id for job_id in self._ids if held(job_id)}
        return self._ids.intersection(job_ids)
