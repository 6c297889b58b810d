"""The memory backend's state: queues, delayed jobs, in-flight deliveries, dead letters.

One ``MemoryState`` lives in one process (the parent of a ``conveyor run`` tree) and is shared by
threads under one lock. It implements the queue protocol's semantics directly; ``memory.py``
exposes it to this process and, over per-child channels, to child processes.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from services.errors import QueueFullError
from services.jobqueue import Completion, DeadLetter, Delivery, JobStatus
from services.settings import QueueSettings

_MAX_STATUSES = 100_000
_MAX_REASON_CHARS = 16_384


@dataclass(frozen=True)
class _Waiting:
    job_id: str
    body: bytes
    redeliveries: int


class MemoryState:
    """Every job of one embedded backend; all methods are thread-safe."""

    def __init__(
        self, settings: QueueSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Condition()
        self._queues: dict[str, deque[_Waiting]] = {}
        self._delayed: list[tuple[float, int, str, _Waiting]] = []
        self._inflight: dict[str, tuple[str, Delivery]] = {}
        self._dead: dict[str, deque[DeadLetter]] = {}
        self._statuses: OrderedDict[str, tuple[float, JobStatus]] = OrderedDict()
        self._receipts = itertools.count(1)
        self._released: set[str] = set()
        """Consumers declared dead: a get still waiting on their behalf must take nothing."""

    # -- producing -------------------------------------------------------------------------
    def put_many(self, queue: str, items: Sequence[tuple[str, bytes]], delay_s: float) -> None:
        """Store jobs now, or in the delayed heap until ``delay_s`` has passed."""
        with self._lock:
            self._wait_for_room(queue, len(items))
            for job_id, body in items:
                self._add(queue, _Waiting(job_id, body, 0), delay_s)
            self._lock.notify_all()

    def _wait_for_room(self, queue: str, count: int) -> None:
        limit = self._settings.max_depth
        if limit is None:
            return
        deadline = self._clock() + self._settings.put_timeout_s
        while self._depth(queue) + count > limit:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise QueueFullError(
                    f"queue {queue!r} is full ({limit} jobs) after "
                    f"{self._settings.put_timeout_s:g} s; nothing was enqueued"
                )
            self._lock.wait(remaining)

    def _add(self, queue: str, item: _Waiting, delay_s: float, *, front: bool = False) -> None:
        if delay_s > 0:
            due = self._clock() + delay_s
            heapq.heappush(self._delayed, (due, next(self._receipts), queue, item))
            self._set_status(item.job_id, "scheduled")
            return
        waiting = self._queues.setdefault(queue, deque())
        if front:
            waiting.appendleft(item)
        else:
            waiting.append(item)

    # -- consuming -------------------------------------------------------------------------
    def get(
        self, consumer_id: str, queues: Sequence[str], max_count: int, timeout_s: float
    ) -> list[Delivery]:
        """Move up to ``max_count`` jobs into flight for ``consumer_id``, waiting for one."""
        deadline = self._clock() + timeout_s
        with self._lock:
            while True:
                if consumer_id in self._released:
                    return []
                self._promote_due()
                taken = self._take(consumer_id, queues, max_count)
                remaining = deadline - self._clock()
                if taken or remaining <= 0:
                    return taken
                self._lock.wait(min(remaining, self._until_next_due()))

    def _take(self, consumer_id: str, queues: Sequence[str], max_count: int) -> list[Delivery]:
        taken: list[Delivery] = []
        for queue in queues:
            waiting = self._queues.get(queue)
            while waiting and len(taken) < max_count:
                item = waiting.popleft()
                delivery = Delivery(
                    job_id=item.job_id,
                    queue=queue,
                    body=item.body,
                    receipt=str(next(self._receipts)),
                    redeliveries=item.redeliveries,
                )
                self._inflight[delivery.receipt] = (consumer_id, delivery)
                self._set_status(item.job_id, "running")
                taken.append(delivery)
        if taken:
            self._lock.notify_all()  # bounded producers may be waiting for room
        return taken

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, queue, item = heapq.heappop(self._delayed)
            self._add(queue, item, 0.0)

    def _until_next_due(self) -> float:
        if not self._delayed:
            return 3600.0
        return max(0.0, self._delayed[0][0] - self._clock())

    # -- settling --------------------------------------------------------------------------
    def ack(self, completions: Sequence[Completion]) -> int:
        """Forget finished jobs, keeping their result; returns how many were fenced."""
        return self.ack_receipts([(c.delivery.receipt, c.result) for c in completions])

    def ack_receipts(self, done: Sequence[tuple[str, bytes | None]]) -> int:
        """``ack`` by ``(receipt, result)``: what a child sends, without the bodies."""
        rejected = 0
        with self._lock:
            for receipt, result in done:
                entry = self._inflight.pop(receipt, None)
                if entry is None:
                    rejected += 1
                    continue
                self._set_status(entry[1].job_id, "done", result=result)
            self._lock.notify_all()
        return rejected

    def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Hand unfinished jobs back to the front of their queues."""
        with self._lock:
            for delivery in reversed(deliveries):
                if self._settle(delivery) is not None:
                    item = _Waiting(delivery.job_id, delivery.body, delivery.redeliveries)
                    self._add(delivery.queue, item, 0.0, front=True)
                    self._set_status(delivery.job_id, "queued")
            self._lock.notify_all()

    def retry(self, delivery: Delivery, body: bytes, delay_s: float, error: str) -> bool:
        """Replace an in-flight job by its next attempt, due after ``delay_s``."""
        with self._lock:
            if self._settle(delivery) is None:
                return False
            self._add(delivery.queue, _Waiting(delivery.job_id, body, 0), delay_s)
            self._set_status(delivery.job_id, "failed", error=error)
            self._lock.notify_all()
            return True

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move an in-flight job to its queue's dead letters."""
        with self._lock:
            if self._settle(delivery) is None:
                return False
            self._bury(delivery.queue, delivery.job_id, delivery.body, reason)
            self._lock.notify_all()
            return True

    def release(
        self, consumer_id: str, reason: str, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back every job ``consumer_id`` holds; quarantine those past the poison limit."""
        with self._lock:
            self._released.add(consumer_id)
            mine = [d for owner, d in self._inflight.values() if owner == consumer_id]
            for delivery in mine:
                self._settle(delivery)
                if suspects is None or delivery.job_id in suspects:
                    self._redeliver(delivery, reason)
                else:
                    item = _Waiting(delivery.job_id, delivery.body, delivery.redeliveries)
                    self._add(delivery.queue, item, 0.0, front=True)
            self._lock.notify_all()
            return len(mine)

    def _redeliver(self, delivery: Delivery, reason: str) -> None:
        count = delivery.redeliveries + 1
        if count >= self._settings.max_redeliveries:
            times = "time" if count == 1 else "times"
            self._bury(delivery.queue, delivery.job_id, delivery.body, f"{reason}, {count} {times}")
            return
        item = _Waiting(delivery.job_id, delivery.body, count)
        self._add(delivery.queue, item, 0.0, front=True)

    def _settle(self, delivery: Delivery) -> Delivery | None:
        entry = self._inflight.pop(delivery.receipt, None)
        return None if entry is None else entry[1]

    def _bury(self, queue: str, job_id: str, body: bytes, reason: str) -> None:
        letters = self._dead.setdefault(queue, deque(maxlen=self._settings.dead_letter_max))
        reason = reason[-_MAX_REASON_CHARS:]
        letters.appendleft(DeadLetter(job_id, queue, body, reason, time.time()))
        self._set_status(job_id, "dead", error=reason)

    # -- reading ---------------------------------------------------------------------------
    def dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters of ``queue`` younger than the age bound."""
        oldest = time.time() - self._settings.dead_letter_max_age_s
        with self._lock:
            letters = self._dead.get(queue, deque())
            while letters and letters[-1].failed_at < oldest:
                letters.pop()
            return list(itertools.islice(letters, limit))

    def requeue_dead(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Put dead letters back on their queue; returns how many."""
        with self._lock:
            letters = self._dead.get(queue, deque())
            chosen = [d for d in letters if job_ids is None or d.job_id in job_ids]
            for letter in chosen:
                letters.remove(letter)
                self._add(queue, _Waiting(letter.job_id, letter.body, 0), 0.0)
                self._set_status(letter.job_id, "queued")
            self._lock.notify_all()
            return len(chosen)

    def depth(self, queue: str) -> int:
        """Jobs waiting in ``queue``."""
        with self._lock:
            return self._depth(queue)

    def _depth(self, queue: str) -> int:
        return len(self._queues.get(queue, ()))

    def status(self, job_id: str) -> JobStatus | None:
        """The last known status of ``job_id``."""
        with self._lock:
            return self._status(job_id)

    def _status(self, job_id: str) -> JobStatus | None:
        self._expire_statuses()
        found = self._statuses.get(job_id)
        return None if found is None else found[1]

    def _expire_statuses(self) -> None:
        # Updates move a status to the end, so the oldest stand first.
        now = self._clock()
        while self._statuses:
            written_at, _ = next(iter(self._statuses.values()))
            if now - written_at < self._settings.result_ttl_s:
                return
            self._statuses.popitem(last=False)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block until ``job_id`` is done or dead, or ``timeout_s`` passes."""
        deadline = self._clock() + timeout_s
        with self._lock:
            while True:
                found = self._status(job_id)
                if found is not None and found.status in ("done", "dead"):
                    return found
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def _set_status(
        self, job_id: str, status: str, *, error: str | None = None, result: bytes | None = None
    ) -> None:
        if self._settings.result_ttl_s <= 0:
            return
        old_entry = self._statuses.pop(job_id, None)
        old = None if old_entry is None else old_entry[1]
        attempts = (old.attempts if old else 0) + (status in ("done", "failed", "dead"))
        if error is None and old is not None and status != "done":
            error = old.error
        self._statuses[job_id] = (self._clock(), JobStatus(job_id, status, attempts, error, result))
        while len(self._statuses) > _MAX_STATUSES:  # bounded: oldest statuses go first
            self._statuses.popitem(last=False)
