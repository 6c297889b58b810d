"""Jobs with limits (``services.limits``) wait here, fetched but not started, until one of this
process's slots is free for them; only then do they ask the backend for their permits.

Asking at fetch time would let prefetched jobs hold permits while they wait behind other jobs in
this process, so a limit as large as the fleet's slots would still bind: measured with
``scripts/bench_limits.py``, 2 permits for 2 slots ran 217 jobs/s against 5,217 unlimited. A job
the backend refuses is parked there (``JobLimiter.admit``): it is no longer this consumer's, so
the line forgets it, and the next one gets its turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from consumer.mailbox import Task


class AdmissionLine:
    """Limited tasks waiting for a free slot, oldest first."""

    def __init__(self) -> None:
        self._tasks: deque[Task] = deque()

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task) -> None:
        """Queue a fetched task whose job has limits."""
        self._tasks.append(task)

    def take_all(self) -> list[Task]:
        """Every waiting task (to hand back on a stop), oldest first; the line is left empty."""
        tasks = list(self._tasks)
        self._tasks.clear()
        return tasks

    def admit(self, free: int, admit: Callable[[Task], bool]) -> tuple[list[Task], list[Task]]:
        """Ask for the permits of tasks, oldest first, until ``free`` were admitted or none is
        left: ``(admitted, refused)``; the refused ones were parked by the backend (or handed
        back, when it was away) and are no longer this consumer's."""
        admitted: list[Task] = []
        refused: list[Task] = []
        while len(admitted) < free and self._tasks:
            task = self._tasks.popleft()
            (admitted if admit(task) else refused).append(task)
        return admitted, refused
