"""The worker loop of one process: get -> decode -> execute -> settle, one turn at a time.

``run_once`` is one turn, public so tests step it instead of sleeping::

    settle finished jobs -> enforce timeouts -> stop aborted jobs -> confirm a lapsed hold
    -> flush settlements -> fetch (or wait; from the queues that are not paused)

Jobs run in an executor (threads or an event loop), never in this loop, so the loop keeps
fetching, acknowledging and watching deadlines while they run. Whether a fetched job may start
is the ``StartGate``'s call (``consumer.gate``), which the executor's mailbox was built with:
not after a stop, not without ownership, a crash suspect alone. Done and dead count once the
backend accepted them (``consumer.settling``). The worker knows the queue protocol only, never
which backend is behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum

from consumer.aborting import AbortWatch, abort_reason
from consumer.admission import AdmissionLine
from consumer.backoff import backoff_s
from consumer.execution import Outcome
from consumer.executors import Executor
from consumer.fetching import QUICK_JOB_S, next_extra, open_queues, queue_order
from consumer.gate import OwnershipCheck, Verdict
from consumer.mailbox import Task
from consumer.settling import Ledger
from services.codec import decode_job, encode_job
from services.errors import BackendUnavailableError, DecodeError, UnknownJobError
from services.limits import Limit
from services.protocol import Completion, Delivery, JobLimiter, JobTaker
from services.registry import Registry
from services.settings import WorkerSettings
from services.stats import Field, Stats

log = logging.getLogger("conveyor.worker")


class State(Enum):
    """Where a worker is in its life."""

    RUNNING = "running"
    DRAINING = "draining"
    """Fetches nothing more; finishes what it holds."""
    STOPPED = "stopped"


class Worker:
    """Fetches jobs from ``queue``, runs them on ``executor``, settles them."""

    def __init__(
        self,
        queue: JobTaker,
        registry: Registry,
        executor: Executor,
        settings: WorkerSettings,
        *,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._executor = executor
        self._settings = settings
        self._stats = stats
        self._clock = clock
        self._ledger = Ledger(queue, stats=stats, clock=clock)
        self._ownership = OwnershipCheck(queue, clock=clock)
        self._aborts = AbortWatch(queue, clock=clock)
        self._held: dict[str, Task] = {}
        self._line = AdmissionLine()
        """Fetched jobs with limits, waiting for a free slot before they ask for permits."""
        self._fetch_failures = 0
        self._fetches = 0
        self._fetch_not_before = 0.0
        self._extra = settings.prefetch
        """Jobs fetched beyond the slots: ``settings.prefetch``, more while the queue is deep."""
        self._seen_quick = self._seen_slow = False
        """Whether jobs settled since the last fetch ran shorter / longer than ``QUICK_JOB_S``."""
        self.state = State.RUNNING
        self.recycle_reason: str | None = None
        self.jobs_settled = 0
        self.idle = False
        """True once a fetch found every queue empty while nothing was held (``--burst``)."""

    @property
    def held(self) -> int:
        """Jobs fetched and not yet settled with the backend (waiting, running or finished)."""
        return len(self._held) + len(self._ledger)

    def stopping(self) -> bool:
        """Whether the supervisor asked this process to stop (no job may start any more)."""
        return self._stats is not None and self._stats.stop_requested()

    def start(self) -> None:
        """Start the executor's threads or loop."""
        self._executor.start()

    def run_once(self) -> None:
        """One turn of the loop; blocks at most ``settings.poll_s``."""
        self._beat()
        finished = self._executor.mailbox.take_finished()
        if finished:
            wall = time.time()  # once per batch: the latency histogram's buckets are 12% wide
            for each in finished:
                self._settle(each.task, each.outcome, wall)
        self._enforce_timeouts()
        for task in self._aborts.requested(self._executor.mailbox.running()):
            self._abort(task)
        self._confirm_if_lapsed()
        if self._executor.mailbox.take_refusal() is Verdict.WAIT:
            self._executor.submit_many([])  # wake the executor: a slot may be free for it now
        if self.state is State.RUNNING and self.recycle_reason is None and not self.stopping():
            self._start_limited()
            self._fetch()  # flushes the ledger itself (see ``_fetch``)
            return
        self._ledger.flush()
        if self.state is State.DRAINING and not self.held:
            self.state = State.STOPPED
        else:
            self._executor.mailbox.wait_finished(min(0.05, self._settings.poll_s))

    def drain(self) -> None:
        """Stop fetching; hand back jobs that have not started; let running ones finish."""
        if self.state is not State.RUNNING:
            return
        self.state = State.DRAINING
        returned = self._hand_back(self._executor.mailbox.take_pending() + self._line.take_all())
        running = len(self._held)
        log.info("draining %d running job(s); handed back %d not started", running, returned)
        self._ledger.flush()

    def stop_now(self) -> int:
        """Hand back every unsettled job at once; returns how many went back."""
        pending = self._executor.mailbox.take_pending()
        running = self._executor.mailbox.running()
        for task in running:
            self._executor.mailbox.abandon(task)
        returned = self._hand_back(pending + self._line.take_all() + running)
        for finished in self._executor.mailbox.take_finished():
            self._settle(finished.task, finished.outcome)
        self._ledger.flush()
        self._executor.stop()
        self.state = State.STOPPED
        if returned:
            log.info("requeued %d unfinished job(s)", returned)
        return returned

    def flush(self, timeout_s: float) -> bool:
        """Keep sending settlements until none is left or ``timeout_s`` passes."""
        deadline = self._clock() + timeout_s
        while not self._ledger.flush() and self._clock() < deadline:
            time.sleep(0.05)  # the ledger's own backoff decides when it really retries
        return len(self._ledger) == 0

    # -- fetching ---------------------------------------------------------------------------
    def _fetch(self) -> None:
        """Fetch what the slots need; the ledger's settlements are sent first (and before any
        wait), so a settlement never waits for a fetch or a quiet queue."""
        if self._clock() < self._fetch_not_before:
            self._flush_and_wait(0.05)
            return
        queues = self._open_queues()
        if not queues:
            # Every queue is paused: nothing to ask for. Wait as an idle fetch would (a job
            # finishing wakes it), then look at the pauses again.
            self._ledger.flush()
            self.idle = not self.held
            self._executor.mailbox.wait_finished(self._settings.poll_s)
            return
        poll_s = self._settings.poll_s
        capacity, held = self._executor.capacity, len(self._held)
        room = capacity + self._extra - held
        if room <= 0 or held > capacity + self._extra // 2:  # refill in batches, not one by one
            self._flush_and_wait(min(0.05, poll_s))
            return
        # A free slot: wait in the backend for work (briefly while jobs run: their acks wait).
        # Every slot taken: only top up the prefetch, then wait for a job to finish.
        busy = held >= capacity
        wait_s = 0.0 if busy else poll_s if not held else 0.02
        # Settlements first: a job fetched now may start at once and kill this process, and
        # the jobs that finished before it must not be run again for that.
        self._ledger.flush()
        deliveries = self._get(queues, room, wait_s)
        if deliveries is None:
            return
        self._took(deliveries, full=len(deliveries) == room)
        if len(deliveries) < room and len(self._held) >= capacity:
            # The queue is empty and every slot is taken: sleep until a job finishes, so it is
            # acked at once (and the job just handed over gets the GIL straight away).
            self._executor.mailbox.wait_finished(min(0.05, poll_s))

    def _took(self, deliveries: list[Delivery], *, full: bool) -> None:
        """Hand fetched deliveries to the executor, in one batch; adjust the prefetch."""
        self._extra = next_extra(
            self._extra,
            self._settings.prefetch,
            full=full,
            quick=self._seen_quick,
            slow=self._seen_slow,
        )
        self._seen_quick = self._seen_slow = False
        self.idle = not deliveries and not self.held
        accepted = [task for task in map(self._accept, deliveries) if task is not None]
        if accepted:
            self._executor.submit_many(accepted)  # one wake-up per batch, not per job
        self._start_limited()

    def _flush_and_wait(self, timeout_s: float) -> None:
        self._ledger.flush()
        self._executor.mailbox.wait_finished(timeout_s)

    def _open_queues(self) -> tuple[str, ...]:
        """The queues to fetch from: this worker's, less those its supervisor says are paused."""
        mask = int(self._stats.get(Field.PAUSED)) if self._stats is not None else 0
        return open_queues(self._settings.queues, mask)

    def _get(self, queues: tuple[str, ...], room: int, wait_s: float) -> list[Delivery] | None:
        """Up to ``room`` deliveries from ``queues``; None while the backend is away (after a
        backoff)."""
        try:
            self._fetches += 1
            ordered = queue_order(queues, self._fetches)
            deliveries = self._queue.get(ordered, max_count=room, timeout_s=wait_s)
        except BackendUnavailableError as exc:
            self._fetch_failures += 1
            delay = backoff_s(self._fetch_failures, base_s=0.2, cap_s=5.0)
            self._fetch_not_before = self._clock() + delay
            log.warning("cannot fetch (%s); retrying in %.1f s", exc, delay)
            return None
        if self._fetch_failures:
            log.info("fetching again after %d failed attempt(s)", self._fetch_failures)
            self._fetch_failures = 0
        return deliveries

    def _accept(self, delivery: Delivery) -> Task | None:
        """The task for a delivery to submit now; None when it cannot run (dead-lettered here)
        or must wait in the admission line for a free slot (its job has limits)."""
        try:
            job = decode_job(delivery.body)
            spec = self._registry.get(job.name)
        except DecodeError as exc:
            self._bury(delivery, f"malformed message: {exc}")
            return None
        except UnknownJobError as exc:
            self._bury(delivery, f"{exc} (not in this worker's registry)")
            return None
        except Exception as exc:  # whatever the bytes hold, one job must not kill the process
            self._bury(delivery, f"malformed message: {type(exc).__name__}: {exc}")
            return None
        timeout = job.timeout_s or spec.timeout_s or self._settings.job_timeout_s
        task = Task(delivery=delivery, job=job, spec=spec, timeout_s=timeout)
        self._held[delivery.receipt] = task
        if spec.limits:
            self._line.add(task)  # its permits are asked for when a slot is free for it
            return None
        return task

    def _start_limited(self) -> None:
        """Start waiting limited jobs in the slots free now, as far as their limits allow."""
        free = self._executor.capacity - self._executor.mailbox.load()
        if free <= 0 or not self._line:
            return
        admitted, refused = self._line.admit(
            free, lambda task: self._admit(task.delivery, task.spec.limits)
        )
        for task in refused:
            self._held.pop(task.delivery.receipt, None)
        if admitted:
            self._executor.submit_many(admitted)

    def _admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        """Whether the backend let the job start under its limits; False: it was parked (no
        longer ours), or the backend is away (handed back through the ledger)."""
        if not isinstance(self._queue, JobLimiter):
            self._bury(delivery, f"this backend cannot enforce limits ({limits[0]})")
            return False
        try:
            return self._queue.admit(delivery, limits)
        except BackendUnavailableError as exc:
            log.warning("cannot take the limits of job %s (%s); handed back", delivery.job_id, exc)
            self._ledger.hand_back(delivery)
            return False

    def _confirm_if_lapsed(self) -> None:
        """Once the hold may have lapsed (a pause), run only the waiting jobs still ours; the
        others (another consumer has them) are dropped here, neither run nor settled."""
        if not self._ownership.due():
            return
        pending = self._executor.mailbox.take_pending()
        found = self._ownership.confirm(pending) if pending else None
        if found is None:
            self._executor.mailbox.push_many(pending)
            return
        ours, lost = found
        for task in lost:
            self._held.pop(task.delivery.receipt, None)
        self._executor.submit_many(ours)

    # -- settling ---------------------------------------------------------------------------
    def _settle(self, task: Task, outcome: Outcome, wall: float | None = None) -> None:
        """Queue the settlement of a finished task (``wall``: ``time.time()`` now, if read)."""
        self._held.pop(task.delivery.receipt, None)
        self.jobs_settled += 1
        if outcome.duration_s < QUICK_JOB_S:
            self._seen_quick = True
        else:
            self._seen_slow = True
        queue, name = task.delivery.queue, task.job.name
        if self._stats is not None:
            self._stats.job_ran(queue, name, outcome.duration_s)
        if outcome.ok:
            self._ledger.ack(Completion(task.delivery, outcome.result), name)  # counted once sent
            if self._stats is not None:
                now = time.time() if wall is None else wall
                self._stats.record_latency(max(0.0, now - task.job.enqueued_at))
            return
        self._count(Field.FAILED)
        error = outcome.error or "failed"
        job, spec = task.job, task.spec
        if job.attempt < spec.max_retries:
            delay = backoff_s(
                job.attempt, base_s=self._settings.retry.base_s, cap_s=self._settings.retry.cap_s
            )
            self._ledger.retry(task.delivery, encode_job(job.next_attempt()), delay, error, name)
            return
        tries = job.attempt + 1
        self._bury(task.delivery, f"failed {tries} time(s); last error:\n{error}", name)

    def _bury(self, delivery: Delivery, reason: str, job: str = "") -> None:
        lines = reason.strip().splitlines() or [""]
        summary = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
        log.warning(
            "dead-lettered job %s: %s", delivery.job_id, summary, extra={"job": delivery.job_id}
        )
        self._ledger.bury(delivery, reason, job)

    def _hand_back(self, tasks: list[Task]) -> int:
        for task in tasks:
            self._held.pop(task.delivery.receipt, None)
            self._ledger.hand_back(task.delivery)
        return len(tasks)

    def _enforce_timeouts(self) -> None:
        now = self._clock()
        for task in self._executor.mailbox.running():
            if task.started_at is None or now - task.started_at <= task.timeout_s:
                continue
            self._executor.mailbox.abandon(task)
            if self._stats is not None:
                self._stats.job_timed_out(task.delivery.queue, task.job.name)
            message = f"timed out after {task.timeout_s:g} s"
            log.warning(
                "job %s (%s) %s", task.job.id, task.job.name, message, extra={"job": task.job.id}
            )
            self._settle(task, Outcome(ok=False, error=message, duration_s=now - task.started_at))
            # A thread cannot be killed: the process must be replaced to free the slot.
            self.recycle_reason = f"job {task.job.id} {message}"

    def _abort(self, task: Task) -> None:
        """Stop a job an operator aborted (``consumer.aborting``): dead, never retried."""
        self._executor.mailbox.abandon(task)
        in_place = self._executor.cancel(task)
        now = self._clock()
        reason = abort_reason(now - (task.started_at or now), in_place=in_place)
        self._held.pop(task.delivery.receipt, None)
        self.jobs_settled += 1
        self._bury(task.delivery, reason, task.job.name)
        if not in_place:  # a thread cannot be stopped: replace the process to free its slot
            self.recycle_reason = f"job {task.job.id} {reason}"

    def _beat(self) -> None:
        if self._stats is not None:
            self._stats.set(Field.HEARTBEAT, self._clock())
            self._stats.set(Field.RUNNING, len(self._executor.mailbox.running()))
            self._stats.set(Field.ALARMS, len(self._queue.alarms()))

    def _count(self, field: Field) -> None:
        if self._stats is not None:
            self._stats.add(field)
