"""What passes between the worker loop and an executor: tasks in, finished tasks out.

Before a task starts, the mailbox asks its ``StartGate`` (``consumer.gate``): a refused task
stays pending, the executor waits, and the worker loop sees the refusal (``take_refusal``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from consumer.board import RunningBoard
from consumer.execution import Outcome
from consumer.gate import StartGate, Verdict, is_suspect
from services.job import Job
from services.protocol import Delivery
from services.registry import JobSpec
from services.stats import Stats


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

    def __init__(
        self,
        *,
        board: RunningBoard | None = None,
        gate: StartGate | None = None,
        stats: Stats | None = None,
    ) -> None:
        self._board = board
        """Where running job ids are published for the supervisor (None: nowhere)."""
        self._gate = gate
        """Asked before each start (None: everything starts)."""
        self._stats = stats
        """Counts each start (its cells have one writer: whoever holds this lock)."""
        # Two conditions on one lock: a finished task wakes only the worker loop, a new task
        # wakes one executor thread, so hundreds of idle threads are never woken in a herd.
        self._lock = threading.Lock()
        self._has_pending = threading.Condition(self._lock)
        self._has_finished = threading.Condition(self._lock)
        self._pending: deque[Task] = deque()
        self._finished: list[Finished] = []
        self._running: set[int] = set()
        self._tasks: dict[int, Task] = {}
        self._suspects_running = 0
        self._refusal: Verdict | None = None
        self._held_back = False
        """A start was refused since the last finish: wake the waiting slots on the next one."""
        self._closed = False

    def push_many(self, tasks: list[Task]) -> None:
        """Queue tasks for the executor's slots, waking one idle slot per task."""
        with self._lock:
            self._pending.extend(tasks)
            self._has_pending.notify(len(tasks))

    def next_task(self, clock_now: float) -> Task | None:
        """Block until a pending task may start (marks it running) or the mailbox closes."""
        with self._lock:
            while not self._closed:
                if self._pending and self._may_start_locked():
                    return self._start_locked(clock_now)
                self._has_pending.wait()
            return None

    def try_next_task(self, clock_now: float) -> Task | None:
        """A pending task marked running, or None at once if none waits or may start."""
        started = self.try_next_tasks(clock_now, 1)
        return started[0] if started else None

    def try_next_tasks(self, clock_now: float, limit: int) -> list[Task]:
        """Up to ``limit`` pending tasks marked running, at once (empty: none waits or may
        start). One lock and one note to the backend for the batch, not one per task."""
        started: list[Task] = []
        wall = time.time()
        with self._lock:
            while len(started) < limit and self._pending and not self._closed:
                if not self._may_start_locked():
                    break
                started.append(self._start_locked(clock_now, tell_gate=False, wall=wall))
            if started and self._gate is not None:
                self._gate.started_many(started)
        return started

    def take_refusal(self) -> Verdict | None:
        """Why the gate last refused a start since the previous call (None: it did not)."""
        with self._lock:
            refusal, self._refusal = self._refusal, None
            return refusal

    def _may_start_locked(self) -> bool:
        if self._gate is None:
            return True
        verdict = self._gate.verdict(
            self._pending[0], running=len(self._running), suspects_running=self._suspects_running
        )
        if verdict is Verdict.START:
            return True
        self._refusal = verdict
        self._held_back = True
        return False

    def _wake_held_back_locked(self) -> None:
        """A task ended: slots that the gate refused may start now (a suspect waits for it)."""
        if self._held_back:
            self._held_back = False
            self._has_pending.notify_all()

    def _start_locked(
        self, clock_now: float, *, tell_gate: bool = True, wall: float | None = None
    ) -> Task:
        task = self._pending.popleft()
        task.started_at = clock_now
        if self._board is not None:  # before the job runs: it may kill the process
            task.board_slot = self._board.claim(task.job.id)
        self._running.add(id(task))
        self._tasks[id(task)] = task
        if is_suspect(task.delivery):
            self._suspects_running += 1
        if tell_gate and self._gate is not None:
            self._gate.started(task)
        if self._stats is not None:
            self._stats.job_started(task.delivery.queue, task.job, wall)
        return task

    def finish(self, task: Task, outcome: Outcome) -> None:
        self.finish_many([Finished(task, outcome)])

    def finish_many(self, finished: list[Finished]) -> None:
        """Tasks that ended, under one lock, with one note to the backend and one wake-up."""
        with self._lock:
            ended = [each.task for each in finished if self._unboard(each.task, tell_gate=False)]
            if ended and self._gate is not None:
                self._gate.ended_many(ended)
            self._finished.extend(each for each in finished if not each.task.abandoned)
            self._has_finished.notify_all()
            self._wake_held_back_locked()

    def take_finished(self) -> list[Finished]:
        with self._lock:
            done, self._finished = self._finished, []
            return done

    def wait_finished(self, timeout_s: float) -> None:
        """Block until a task finishes or ``timeout_s`` passes."""
        with self._lock:
            if not self._finished:
                self._has_finished.wait_for(lambda: bool(self._finished), timeout_s)

    def load(self) -> int:
        """Tasks waiting for a slot or running (the slots taken, and those promised)."""
        with self._lock:
            return len(self._pending) + len(self._running)

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
            self._wake_held_back_locked()  # its slot counts as free now

    def _unboard(self, task: Task, *, tell_gate: bool = True) -> bool:
        """Take ``task`` off the running set; False if it was not on it (already abandoned)."""
        if id(task) not in self._running:
            return False
        if self._board is not None:
            self._board.clear(task.board_slot)
        if is_suspect(task.delivery):
            self._suspects_running -= 1
        if tell_gate and self._gate is not None:
            self._gate.ended(task)
        self._running.discard(id(task))
        self._tasks.pop(id(task), None)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._has_pending.notify_all()
            self._has_finished.notify_all()
