"""What passes between the worker loop and an executor: tasks in, finished tasks out."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from consumer.board import RunningBoard
from consumer.execution import Outcome
from services.job import Job
from services.jobqueue import Delivery
from services.registry import JobSpec


@dataclass
class Task:
    """A decoded delivery on its way through an executor."""

    delivery: Delivery
    job: Job
    spec: JobSpec
    timeout_s: float
    started_at: float | None = None
    """Monotonic time an executor began running it; None while it waits for a slot."""
    board_slot: int = -1
    """Where the running job's id stands on the process's ``RunningBoard``."""
    abandoned: bool = False
    """Set by the worker when it gave up on the task (timed out); its outcome is ignored."""


@dataclass(frozen=True)
class Finished:
    """A task and how it ended."""

    task: Task
    outcome: Outcome


class Mailbox:
    """Tasks waiting for a slot, and finished tasks waiting for the worker loop."""

    def __init__(self, board: RunningBoard | None = None) -> None:
        self.board = board
        """Where running job ids are published for the supervisor (None: nowhere)."""
        # Two conditions on one lock: a finished task wakes only the worker loop, a new task
        # wakes one executor thread, so hundreds of idle threads are never woken in a herd.
        self._lock = threading.Lock()
        self._has_pending = threading.Condition(self._lock)
        self._has_finished = threading.Condition(self._lock)
        self._pending: deque[Task] = deque()
        self._finished: list[Finished] = []
        self._running: set[int] = set()
        self._tasks: dict[int, Task] = {}
        self._closed = False

    def push_many(self, tasks: list[Task]) -> None:
        """Queue tasks for the executor's slots, waking one idle slot per task."""
        with self._lock:
            self._pending.extend(tasks)
            self._has_pending.notify(len(tasks))

    def next_task(self, clock_now: float) -> Task | None:
        """Block until a task is pending (marks it running) or the mailbox closes (None)."""
        with self._lock:
            while not self._pending and not self._closed:
                self._has_pending.wait()
            if self._closed:
                return None
            return self._start_locked(clock_now)

    def try_next_task(self, clock_now: float) -> Task | None:
        """A pending task marked running, or None at once if none waits."""
        with self._lock:
            if not self._pending or self._closed:
                return None
            return self._start_locked(clock_now)

    def _start_locked(self, clock_now: float) -> Task:
        task = self._pending.popleft()
        task.started_at = clock_now
        if self.board is not None:  # before the job runs: it may kill the process
            task.board_slot = self.board.claim(task.job.id)
        self._running.add(id(task))
        self._tasks[id(task)] = task
        return task

    def finish(self, task: Task, outcome: Outcome) -> None:
        with self._lock:
            self._unboard(task)
            if not task.abandoned:
                self._finished.append(Finished(task, outcome))
            self._has_finished.notify_all()

    def take_finished(self) -> list[Finished]:
        with self._lock:
            done, self._finished = self._finished, []
            return done

    def wait_finished(self, timeout_s: float) -> None:
        """Block until a task finishes or ``timeout_s`` passes."""
        with self._lock:
            if not self._finished:
                self._has_finished.wait_for(lambda: bool(self._finished), timeout_s)

    def take_pending(self) -> list[Task]:
        with self._lock:
            waiting = list(self._pending)
            self._pending.clear()
            return waiting

    def running(self) -> list[Task]:
        with self._lock:
            return [self._tasks[key] for key in self._running]

    def abandon(self, task: Task) -> None:
        """Forget a running task: it keeps its slot's thread, but its outcome is dropped."""
        with self._lock:
            task.abandoned = True
            self._unboard(task)

    def _unboard(self, task: Task) -> None:
        if id(task) in self._running and self.board is not None:
            self.board.clear(task.board_slot)
        self._running.discard(id(task))
        self._tasks.pop(id(task), None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._has_pending.notify_all()
            self._has_finished.notify_all()
