"""Executors: how one worker process runs its jobs (the pool kind inside a process).

* ``ThreadExecutor``: M threads, one job each; sync jobs run directly, ``async def`` jobs in a
  fresh event loop per call. With M=1 this is the body of a ``processes`` pool child.
* ``AsyncioExecutor``: one event loop in one thread running up to N jobs at once; ``async def``
  jobs run natively, sync jobs in the loop's thread executor.

Both take tasks from a ``Mailbox`` and put outcomes back in it; the worker loop never waits on a
job, so it keeps fetching, acknowledging and watching deadlines while jobs run. A running job
cannot be killed in a thread: the worker gives up on it (``Mailbox.abandon``) and recycles the
process instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Protocol

from consumer.execution import execute, execute_async
from consumer.tasks import Mailbox, Task


class Executor(Protocol):
    """A strategy that runs tasks from ``mailbox`` with at most ``capacity`` at once."""

    capacity: int
    mailbox: Mailbox

    def start(self) -> None:
        """Start the threads or loop; called once, in the process that runs the jobs."""

    def submit(self, task: Task) -> None:
        """Queue ``task`` for the next free slot; never blocks."""

    def stop(self) -> None:
        """Stop taking tasks; running jobs are left to finish or to die with the process."""


class ThreadExecutor:
    """``capacity`` daemon threads, each running one task at a time."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.mailbox = Mailbox()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.capacity):
            thread = threading.Thread(target=self._work, name=f"conveyor-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, task: Task) -> None:
        self.mailbox.push(task)

    def _work(self) -> None:
        while (task := self.mailbox.next_task(time.monotonic())) is not None:
            self.mailbox.finish(task, execute(task.spec, task.job))

    def stop(self) -> None:
        self.mailbox.close()


class AsyncioExecutor:
    """One event loop in its own thread, up to ``capacity`` jobs at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.mailbox = Mailbox()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="conveyor-asyncio", daemon=True)
        self._wake: asyncio.Event | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        # Sync jobs share this pool; sized to the concurrency so none waits for a thread.
        self._loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(self.capacity, "conveyor-sync")
        )
        self._loop.run_until_complete(self._pump())

    async def _pump(self) -> None:
        self._wake = asyncio.Event()
        slots = asyncio.Semaphore(self.capacity)
        while True:
            await slots.acquire()
            task = self.mailbox.try_next_task(time.monotonic())
            while task is None:
                self._wake.clear()
                task = self.mailbox.try_next_task(time.monotonic())
                if task is None:
                    await self._wake.wait()
                if self._stopped:
                    return
            job = self._loop.create_task(self._run(task, slots))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _run(self, task: Task, slots: asyncio.Semaphore) -> None:
        try:
            outcome = await execute_async(task.spec, task.job, self._loop)
            self.mailbox.finish(task, outcome)
        finally:
            slots.release()

    def submit(self, task: Task) -> None:
        self.mailbox.push(task)
        self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        self._stopped = True
        self.mailbox.close()
        self._notify()
