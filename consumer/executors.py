"""Executors: how one worker process runs its jobs (the pool kind inside a process).

* ``ThreadExecutor``: M threads, one job each; sync jobs run directly, ``async def`` jobs in a
  fresh event loop per call. With M=1 this is the body of a ``processes`` pool child.
* ``AsyncioExecutor``: one event loop in one thread running up to N jobs at once; ``async def``
  jobs run natively, sync jobs on threads beside it (its sync lane), whose outcomes reach the
  loop in batches.

Both take tasks from a ``Mailbox`` (given to the constructor, with its running board and start
gate; a bare one by default) and put outcomes back in it; the worker loop never waits on a
job, so it keeps fetching, acknowledging and watching deadlines while jobs run. A running job
cannot be killed in a thread: the worker gives up on it (``Mailbox.abandon``) and recycles the
process instead. Only an ``async def`` job on the ``AsyncioExecutor``'s loop can be stopped in
place (``cancel``: ``CancelledError`` raised at its next ``await``), which aborting uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from consumer.execution import execute, execute_async
from consumer.loop_watchdog import LoopWatchdog, Stall
from consumer.mailbox import Finished, Mailbox, Task


class Executor(Protocol):
    """A strategy that runs tasks from ``mailbox`` with at most ``capacity`` at once."""

    capacity: int
    mailbox: Mailbox

    def start(self) -> None:
        """Start the threads or loop; called once, in the process that runs the jobs."""

    def submit_many(self, tasks: list[Task]) -> None:
        """Queue ``tasks`` for the next free slots; never blocks."""

    def cancel(self, task: Task) -> bool:
        """Stop a running task in place if its kind allows (an ``async def`` job on an event
        loop: cancelled cooperatively); False when only replacing the process stops it."""

    def stop(self) -> None:
        """Stop taking tasks; running jobs are left to finish or to die with the process."""


class ThreadExecutor:
    """``capacity`` daemon threads, each running one task at a time."""

    def __init__(self, capacity: int, mailbox: Mailbox | None = None) -> None:
        self.capacity = capacity
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.capacity):
            thread = threading.Thread(target=self._work, name=f"conveyor-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit_many(self, tasks: list[Task]) -> None:
        self.mailbox.push_many(tasks)

    def _work(self) -> None:
        while (task := self.mailbox.next_task(time.monotonic())) is not None:
            self.mailbox.finish(task, execute(task.spec, task.job))

    def cancel(self, task: Task) -> bool:
        """A thread cannot be stopped (an ``async def`` job runs in its own loop here)."""
        return False

    def stop(self) -> None:
        self.mailbox.close()


class _SyncLane:
    """The sync jobs of an ``AsyncioExecutor``: run on threads of their own, their outcomes
    handed back to the loop in batches.

    ``loop.run_in_executor`` costs a future pair and one wake-up of the loop per job; here a
    thread that finishes a job wakes the loop only if no outcome is already waiting for it,
    so a loop busy with many quick sync jobs collects them all on one wake-up.
    """

    def __init__(self, capacity: int, collect: Callable[[], None]) -> None:
        self._capacity = capacity
        self._collect = collect
        """Called on the loop (``call_soon_threadsafe``) when outcomes wait in ``take_done``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._work: deque[Task] = deque()
        self._done: list[Finished] = []
        self._threads = 0
        self._busy = 0
        """Threads running a job now (the others take the next task or sleep)."""
        self._closed = False

    def submit(self, loop: asyncio.AbstractEventLoop, tasks: list[Task]) -> None:
        """Run ``tasks`` (sync jobs) on the lane's threads, started as needed up to capacity."""
        self._loop = loop
        with self._lock:
            self._work.extend(tasks)
            # Wake one sleeping thread; each thread that takes a task wakes the next while work
            # is left, so quick jobs are run by the few threads already awake, not by a herd.
            self._has_work.notify()
            unbusy = self._threads - self._busy  # each will take a task before it sleeps
            wanted = min(len(self._work) - unbusy, self._capacity - self._threads)
            for _ in range(max(0, wanted)):
                self._threads += 1
                index = self._threads
                threading.Thread(
                    target=self._serve, name=f"conveyor-sync-{index}", daemon=True
                ).start()

    def take_done(self) -> list[Finished]:
        with self._lock:
            done, self._done = self._done, []
            return done

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._has_work.notify_all()

    def _serve(self) -> None:
        while (task := self._next()) is not None:
            finished = Finished(task, execute(task.spec, task.job))
            with self._lock:
                self._busy -= 1
                self._done.append(finished)
                first = len(self._done) == 1
            loop = self._loop
            if first and loop is not None:
                try:
                    loop.call_soon_threadsafe(self._collect)
                except RuntimeError:  # the loop is closed: the executor stopped, nothing waits
                    return

    def _next(self) -> Task | None:
        with self._lock:
            while not self._work and not self._closed:
                self._has_work.wait()
            if self._closed:
                return None
            self._busy += 1
            if len(self._work) > 1:
                self._has_work.notify()  # pass the wake-up on: more work waits
            return self._work.popleft()


class AsyncioExecutor:
    """One event loop in its own thread, up to ``capacity`` jobs at once.

    A ``LoopWatchdog`` names a job that blocks the loop and keeps the other jobs' timeouts
    from running meanwhile (``stall``).
    """

    def __init__(self, capacity: int, mailbox: Mailbox | None = None) -> None:
        self.capacity = capacity
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._jobs: dict[asyncio.Task[None], Task] = {}
        self._free = capacity
        """Slots without a job (read and written on the loop's thread only)."""
        self._done: list[Finished] = []
        """Jobs finished in this pass of the loop, not yet in the mailbox (loop's thread)."""
        self._stopped = False
        self._lane = _SyncLane(capacity, self._collect_sync)
        self._watchdog = LoopWatchdog(self.mailbox, self._running_now)

    @property
    def stall(self) -> Stall | None:
        """The job blocking the event loop now, and since when; None while the loop turns."""
        return self._watchdog.stall

    def start(self) -> None:
        ready = threading.Event()
        thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="conveyor-asyncio", daemon=True
        )
        thread.start()
        ready.wait()
        self._watchdog.start()

    def submit_many(self, tasks: list[Task]) -> None:
        self.mailbox.push_many(tasks)
        self._notify()

    def stop(self) -> None:
        self._stopped = True
        self._watchdog.stop()
        self.mailbox.close()
        self._lane.close()
        self._notify()

    def _running_now(self) -> Task | None:
        """The job whose code the loop is running right now (called from the watchdog)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        current = asyncio.current_task(loop)
        return self._jobs.get(current) if current is not None else None

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _run_loop(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        # Sync jobs run on the executor's own lane (``_SyncLane``); this pool serves what jobs
        # send to ``run_in_executor(None, ...)``, sized to the concurrency as the lane is.
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(self.capacity, "conveyor-sync")
        )
        self._loop = loop
        self._wake = asyncio.Event()
        ready.set()
        beating = loop.create_task(self._watchdog.beating())
        try:
            loop.run_until_complete(self._pump(self._wake))
            loop.run_until_complete(self._cancel_jobs())
        finally:
            beating.cancel()
            loop.run_until_complete(asyncio.gather(beating, return_exceptions=True))
            loop.close()

    async def _pump(self, wake: asyncio.Event) -> None:
        # Each wake-up starts every task that may start in the free slots, in one batch: one
        # lock and one note to the backend per batch, not one per job.
        loop = asyncio.get_running_loop()
        while not self._stopped:
            tasks = self._next_tasks()
            if not tasks:
                wake.clear()
                tasks = self._next_tasks()  # a push may have come between the two
                if not tasks:
                    await wake.wait()
                    continue
            self._free -= len(tasks)
            sync = [task for task in tasks if not task.spec.is_async]
            if sync:
                self._lane.submit(loop, sync)
            for task in tasks:
                if task.spec.is_async:
                    job = loop.create_task(self._run(task, wake))
                    self._jobs[job] = task
                    job.add_done_callback(self._forget)

    def _next_tasks(self) -> list[Task]:
        if self._free <= 0 or self._stopped:
            return []
        return self.mailbox.try_next_tasks(time.monotonic(), self._free)

    def cancel(self, task: Task) -> bool:
        """Cancel ``task`` on the loop if it is an ``async def`` job running there; a sync job
        runs in the loop's thread pool, where nothing can stop it."""
        loop = self._loop
        if not task.spec.is_async or loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(self._cancel_on_loop, task)
        return True

    def _cancel_on_loop(self, task: Task) -> None:
        # On the loop's thread, which alone changes ``_jobs``. A job that swallows the
        # CancelledError keeps its slot until it returns: cancelling is cooperative.
        for job, running in self._jobs.items():
            if running is task:
                job.cancel()

    def _forget(self, job: asyncio.Task[None]) -> None:
        self._jobs.pop(job, None)

    async def _cancel_jobs(self) -> None:
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self._hand_over_done()

    async def _run(self, task: Task, wake: asyncio.Event) -> None:
        try:
            outcome = await execute_async(task.spec, task.job, asyncio.get_running_loop())
            if not self._done:  # the first of this pass: hand them all over once it is over
                asyncio.get_running_loop().call_soon(self._hand_over_done)
            self._done.append(Finished(task, outcome))
        finally:
            self._free += 1
            wake.set()

    def _collect_sync(self) -> None:
        """On the loop: the sync jobs finished since the last call free their slots."""
        done = self._lane.take_done()
        self._free += len(done)
        if self._wake is not None:
            self._wake.set()
        self.mailbox.finish_many(done)

    def _hand_over_done(self) -> None:
        """Give the jobs finished in one pass of the loop to the mailbox at once."""
        done, self._done = self._done, []
        if done:
            self.mailbox.finish_many(done)
