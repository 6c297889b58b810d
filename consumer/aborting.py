"""Aborting running jobs on request (``conveyor abort``): the worker's side.

An operator's ``abort`` records a request in the backend (``QueueAdmin.abort``). While jobs
run, the worker asks the backend which of them are wanted stopped (``JobTaker.aborted``: one
cheap round trip, at most every ``CHECK_EVERY_S`` per process, none while nothing runs) and
stops each one found:

* an ``async def`` job on an event loop is cancelled in place (``Executor.cancel``:
  ``CancelledError`` at its next ``await``), and the process keeps running;
* any other job (a sync job in a thread, in a process pool's child or on the loop's thread
  pool) cannot be stopped in its thread: the worker gives up on it and recycles the process, as
  for a timeout, and the supervisor starts a fresh one.

Either way the job is settled at once as dead, with a reason starting ``"aborted"``, never
retried; its outcome, if it ever comes, is dropped (``Mailbox.abandon``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from consumer.mailbox import Task
from services.errors import BackendUnavailableError
from services.protocol import ABORTED, JobTaker

log = logging.getLogger("conveyor.worker")

CHECK_EVERY_S = 0.5
"""Longest wait between an abort request and the check that finds it (per worker process)."""


def abort_reason(ran_s: float, *, in_place: bool) -> str:
    """The dead reason (and status error) of a job aborted after ``ran_s`` seconds."""
    how = "cancelled in place" if in_place else "its worker process replaced"
    return f"{ABORTED} by request after {ran_s:.1f} s of running ({how})"


class AbortWatch:
    """Asks the backend, now and then, which running tasks are to be aborted."""

    def __init__(
        self,
        queue: JobTaker,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = CHECK_EVERY_S,
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._every_s = every_s
        self._next_at = 0.0
        self._failing = False

    def requested(self, running: Sequence[Task]) -> list[Task]:
        """The tasks of ``running`` whose jobs were asked to abort; [] between checks, while
        nothing runs, and while the backend is away (the next check asks again)."""
        now = self._clock()
        if not running or now < self._next_at:
            return []
        self._next_at = now + self._every_s
        try:
            found = self._queue.aborted([task.delivery for task in running])
        except BackendUnavailableError as exc:
            if not self._failing:
                log.warning("cannot check for abort requests (%s); will try again", exc)
            self._failing = True
            return []
        self._failing = False
        receipts = {delivery.receipt for delivery in found}
        return [task for task in running if task.delivery.receipt in receipts]
