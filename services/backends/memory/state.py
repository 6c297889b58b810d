"""The memory backend's state: queues, delayed jobs, in-flight deliveries, dead letters, counts.

One ``MemoryState`` lives in one process (the parent of a ``conveyor run`` tree) and is shared by
threads under one lock. It implements the queue protocol's semantics directly; ``memory.py``
exposes it to this process and, over per-child channels, to child processes. Job statuses (and
so put-if-absent) are kept by ``memory_statuses``, deliveries in flight (and so fencing) by
``memory_inflight``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from services.backends.memory.aborts import AbortRequests
from services.backends.memory.inflight import InFlight
from services.backends.memory.limits import Limits, Waiter
from services.backends.memory.statuses import FINISHED, WAITING, Statuses
from services.backends.memory.unique import UniqueKeys
from services.errors import QueueFullError
from services.gauges import RING_SIZE, Sample, enqueued_at, rate_from, should_sample
from services.limits import Limit
from services.protocol import (
    CANCELLED,
    Cancellation,
    Completion,
    DeadLetter,
    Delivery,
    JobStatus,
    QueueCounts,
)
from services.settings import QueueSettings

_MAX_REASON_CHARS = 16_384


@dataclass(frozen=True)
class _Waiting:
    job_id: str
    body: bytes
    redeliveries: int


@dataclass(slots=True)
class _Tally:
    """One queue's numbers other than its waiting jobs (the length of its deque)."""

    delayed: int = 0
    in_flight: int = 0
    done: int = 0
    dead: int = 0


class MemoryState:
    """Every job of one memory backend; all methods are thread-safe."""

    def __init__(
        self, settings: QueueSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Condition()
        self._queues: dict[str, deque[_Waiting]] = {}
        self._delayed: list[tuple[float, int, str, _Waiting]] = []
        self._inflight = InFlight()
        self._tallies: dict[str, _Tally] = {}
        self._dead: dict[str, deque[DeadLetter]] = {}
        self._statuses = Statuses(settings.result_ttl_s, clock)
        self._aborts = AbortRequests()
        self._unique = UniqueKeys(self._statuses.held)
        self._limits = Limits()
        self._receipts = itertools.count(1)
        self._released: set[str] = set()
        """Consumers declared dead: a get still waiting on their behalf must take nothing."""
        self._known: set[str] = set()
        """Every queue a job was put on (``queues``)."""
        self._samples: dict[str, deque[Sample]] = {}
        """Per queue, (time, done total) taken by ``done_rate``, newest first."""

    # -- producing -------------------------------------------------------------------------
    def put_many(
        self, queue: str, items: Sequence[tuple[str, bytes]], delay_s: float
    ) -> list[bool]:
        """Store the jobs whose ids are absent, now or once ``delay_s`` has passed; one flag
        per item, False where the id was present (earlier in the batch included)."""
        with self._lock:
            flags = self._wait_for_room(queue, items)
            fresh = [item for item, absent in zip(items, flags, strict=True) if absent]
            self._known.add(queue)
            for job_id, body in fresh:
                self._add(queue, _Waiting(job_id, body, 0), delay_s)
            self._statuses.add(
                (job_id for job_id, _ in fresh), "scheduled" if delay_s > 0 else "queued"
            )
            self._lock.notify_all()
            return flags

    def put_unique(
        self, queue: str, item: tuple[str, bytes], *, key: str, ttl_s: float | None, delay_s: float
    ) -> str:
        """Store ``item`` holding ``key`` unless a live job holds it; the holder's id."""
        with self._lock:
            holder = self._unique.holder(queue, key, self._clock())
            if holder is not None:
                return holder
            # Waiting for room lets go of the lock: someone may have taken the key meanwhile.
            [absent] = self._wait_for_room(queue, [item])
            holder = self._unique.holder(queue, key, self._clock())
            if holder is not None:
                return holder
            if absent:
                self.put_many(queue, [item], delay_s)
                self._unique.claim(queue, key, item[0], ttl_s=ttl_s, now=self._clock())
            return item[0]

    def _wait_for_room(self, queue: str, items: Sequence[tuple[str, bytes]]) -> list[bool]:
        limit = self._settings.max_depth
        deadline = self._clock() + self._settings.put_timeout_s
        while True:
            # Again after each wait: others may have put some of these ids meanwhile.
            flags = self._statuses.absent(job_id for job_id, _ in items)
            if limit is None or self._depth(queue) + sum(flags) <= limit:
                return flags
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
            self._tally(queue).delayed += 1
            return
        waiting = self._queues.setdefault(queue, deque())
        if front:
            waiting.appendleft(item)
        else:
            waiting.append(item)

    def _tally(self, queue: str) -> _Tally:
        found = self._tallies.get(queue)
        if found is None:
            found = self._tallies[queue] = _Tally()
        return found

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
            if not waiting:
                continue
            tally = self._tally(queue)
            while waiting and len(taken) < max_count:
                item = waiting.popleft()
                delivery = Delivery(
                    job_id=item.job_id,
                    queue=queue,
                    body=item.body,
                    receipt=str(next(self._receipts)),
                    redeliveries=item.redeliveries,
                )
                self._inflight.add(consumer_id, delivery)
                tally.in_flight += 1
                self._statuses.set(item.job_id, "running")
                taken.append(delivery)
        if taken:
            self._lock.notify_all()  # bounded producers may be waiting for room
        return taken

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, queue, item = heapq.heappop(self._delayed)
            self._tally(queue).delayed -= 1
            self._add(queue, item, 0.0)

    def _until_next_due(self) -> float:
        if not self._delayed:
            return 3600.0
        return max(0.0, self._delayed[0][0] - self._clock())

    def confirm(self, consumer_id: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Those of ``deliveries`` still in flight for ``consumer_id``, in order."""
        with self._lock:
            return [d for d in deliveries if self._inflight.owner(d.receipt) == consumer_id]

    # -- limits (``memory.limits``; ``JobLimiter`` in ``services.protocol.limiting``) ------
    def admit(self, consumer_id: str, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        """Take ``limits`` for ``delivery`` and say True, or park the job and say False."""
        with self._lock:
            if self._inflight.owner(delivery.receipt) != consumer_id:
                return False  # reclaimed meanwhile: someone else runs it
            waiter = (delivery.queue, delivery.job_id)
            delay, woken = self._limits.admit(delivery.receipt, waiter, limits, self._clock())
            self._wake(woken)
            if delay is None:
                return True
            held = self._settle(delivery.receipt)  # the parent's copy, with the body
            if held is not None:
                item = _Waiting(held.job_id, held.body, held.redeliveries)
                self._add(held.queue, item, delay, front=True)
            self._statuses.set(delivery.job_id, "scheduled", attempted=False)
            self._lock.notify_all()
            return False

    def _wake(self, woken: Sequence[Waiter]) -> None:
        """Move parked jobs to the front of their queues now (a permit they wait for is free)."""
        for queue, job_id in woken:
            item = self._take_delayed(job_id, queue)
            if item is not None:
                self._add(queue, item, 0.0, front=True)
                self._statuses.set(job_id, "queued", attempted=False)
                self._lock.notify_all()

    # -- settling --------------------------------------------------------------------------
    def ack(self, completions: Sequence[Completion]) -> int:
        """Forget finished jobs, keeping their result; returns how many were fenced."""
        return self.ack_receipts([(c.delivery.receipt, c.result) for c in completions])

    def ack_receipts(self, done: Sequence[tuple[str, bytes | None]]) -> int:
        """``ack`` by ``(receipt, result)``: what a child sends, without the bodies."""
        rejected = 0
        with self._lock:
            for receipt, result in done:
                delivery = self._settle(receipt)
                if delivery is None:
                    rejected += self._inflight.fenced(receipt)
                    continue
                self._tally(delivery.queue).done += 1
                self._statuses.set(delivery.job_id, "done", result=result)
            self._lock.notify_all()
        return rejected

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        """Hand unfinished jobs back to the front of their queues."""
        with self._lock:
            for delivery in reversed(deliveries):
                if self._settle(delivery.receipt) is not None:
                    self._hand_back(delivery, delivery.redeliveries)
            self._lock.notify_all()

    def retry(self, delivery: Delivery, body: bytes, delay_s: float, error: str) -> bool:
        """Replace an in-flight job by its next attempt, due after ``delay_s``."""
        with self._lock:
            if self._settle(delivery.receipt) is None:
                return not self._inflight.fenced(delivery.receipt)
            self._add(delivery.queue, _Waiting(delivery.job_id, body, 0), delay_s)
            self._statuses.set(delivery.job_id, "failed", error=error)
            self._lock.notify_all()
            return True

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move an in-flight job to its queue's dead letters."""
        with self._lock:
            if self._settle(delivery.receipt) is None:
                return not self._inflight.fenced(delivery.receipt)
            self._bury(delivery.queue, delivery.job_id, delivery.body, reason)
            self._lock.notify_all()
            return True

    def reclaim(
        self, consumer_id: str, reason: str, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back every job ``consumer_id`` holds; quarantine those past the poison limit."""
        with self._lock:
            self._released.add(consumer_id)
            mine = self._inflight.take_all(consumer_id)
            for delivery in mine:
                self._tally(delivery.queue).in_flight -= 1
                self._wake(self._limits.release(delivery.receipt))
                if suspects is None or delivery.job_id in suspects:
                    self._redeliver(delivery, reason)
                else:
                    self._hand_back(delivery, delivery.redeliveries)
            self._lock.notify_all()
            return len(mine)

    def _redeliver(self, delivery: Delivery, reason: str) -> None:
        count = delivery.redeliveries + 1
        if count >= self._settings.max_redeliveries:
            times = "time" if count == 1 else "times"
            self._bury(delivery.queue, delivery.job_id, delivery.body, f"{reason}, {count} {times}")
            return
        self._hand_back(delivery, count)

    def _hand_back(self, delivery: Delivery, redeliveries: int) -> None:
        item = _Waiting(delivery.job_id, delivery.body, redeliveries)
        self._add(delivery.queue, item, 0.0, front=True)
        self._statuses.set(delivery.job_id, "queued")

    def _settle(self, receipt: str) -> Delivery | None:
        """Take ``receipt`` out of flight; None if it was not in flight (settled or fenced)."""
        delivery = self._inflight.settle(receipt)
        if delivery is not None:
            self._tally(delivery.queue).in_flight -= 1
            self._wake(self._limits.release(receipt))
        return delivery

    def _bury(self, queue: str, job_id: str, body: bytes, reason: str) -> None:
        letters = self._dead.setdefault(queue, self._no_letters())
        reason = reason[-_MAX_REASON_CHARS:]
        letters.appendleft(DeadLetter(job_id, queue, body, reason, time.time()))
        self._tally(queue).dead += 1
        self._statuses.set(job_id, "dead", error=reason)

    # -- reading ---------------------------------------------------------------------------
    def dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters of ``queue`` younger than the age bound."""
        oldest = time.time() - self._settings.dead_letter_max_age_s
        with self._lock:
            letters = self._dead.get(queue, deque())
            while letters and letters[-1].failed_at < oldest:
                letters.pop()
            return list(itertools.islice(letters, limit))

    def _no_letters(self) -> deque[DeadLetter]:
        """An empty list of dead letters, bounded: the oldest fall off past the limit."""
        return deque(maxlen=self._settings.dead_letter_max)

    def revive(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Put dead letters back on their queue; returns how many. A letter whose id the
        backend holds again (put anew after its status expired) stays (put-if-absent)."""
        wanted = None if job_ids is None else set(job_ids)
        with self._lock:
            chosen: list[DeadLetter] = []
            kept = self._no_letters()
            for letter in self._dead.get(queue, ()):
                asked = wanted is None or letter.job_id in wanted
                if asked and not self._statuses.held(letter.job_id):
                    chosen.append(letter)
                else:
                    kept.append(letter)
            if chosen:  # one pass, not a ``remove`` (itself a scan) per revived letter
                self._dead[queue] = kept
            for letter in chosen:
                self._add(queue, _Waiting(letter.job_id, letter.body, 0), 0.0)
                self._statuses.set(letter.job_id, "queued")
            self._lock.notify_all()
            return len(chosen)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None) -> int:
        """Drop dead letters (all, or those ids) of ``queue``; returns how many."""
        wanted = None if job_ids is None else set(job_ids)
        with self._lock:
            letters = self._dead.get(queue, deque())
            kept = self._no_letters()
            if wanted is not None:
                kept.extend(letter for letter in letters if letter.job_id not in wanted)
            dropped = len(letters) - len(kept)
            if dropped:
                self._dead[queue] = kept
            return dropped

    def cancel(self, job_id: str) -> Cancellation:
        """Take ``job_id`` out of its queue or the delayed jobs if it waits: dead, cancelled."""
        with self._lock:
            waits = self._statuses.state(job_id) in WAITING
            queue = self._unqueue(job_id) if waits else None
            if queue is None:
                return Cancellation(job_id, cancelled=False, status=self._statuses.get(job_id))
            tally = self._tally(queue)
            tally.dead += 1
            self._statuses.set(job_id, "dead", error=CANCELLED, attempted=False)
            self._lock.notify_all()
            return Cancellation(job_id, cancelled=True)

    def abort(self, job_id: str) -> Cancellation:
        """``cancel`` ``job_id`` if it waits; if it runs, ask its consumer to stop it."""
        with self._lock:
            if self._statuses.state(job_id) != "running":
                return self.cancel(job_id)
            self._aborts.add(job_id)
            found = self._statuses.get(job_id) or JobStatus(job_id, "running")
            return Cancellation(job_id, cancelled=True, status=found)

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Those of ``deliveries`` whose jobs were asked to stop (``abort``)."""
        with self._lock:
            wanted = self._aborts.pick((d.job_id for d in deliveries), held=self._statuses.held)
            return [d for d in deliveries if d.job_id in wanted]

    def _unqueue(self, job_id: str) -> str | None:
        """Remove waiting ``job_id`` from its queue or the delayed jobs; its queue, or None."""
        for queue, waiting in self._queues.items():
            for item in waiting:
                if item.job_id == job_id:
                    waiting.remove(item)
                    return queue
        for _, _, queue, item in self._delayed:
            if item.job_id == job_id:
                self._take_delayed(job_id, queue)
                return queue
        return None

    def _take_delayed(self, job_id: str, queue: str) -> _Waiting | None:
        """Remove ``job_id`` of ``queue`` from the delayed jobs; the item, or None."""
        for index, (_, _, where, item) in enumerate(self._delayed):
            if (where, item.job_id) == (queue, job_id):
                self._delayed[index] = self._delayed[-1]
                self._delayed.pop()
                heapq.heapify(self._delayed)
                self._tally(queue).delayed -= 1
                return item
        return None

    def queues(self) -> list[str]:
        """The queues jobs were put on, sorted."""
        with self._lock:
            return sorted(self._known)

    def depth(self, queue: str) -> int:
        """Jobs waiting in ``queue``."""
        with self._lock:
            return self._depth(queue)

    def _depth(self, queue: str) -> int:
        return len(self._queues.get(queue, ()))

    def counts(self, queue: str) -> QueueCounts:
        """``queue``'s waiting, delayed and in-flight jobs, and its done and dead totals."""
        with self._lock:
            tally = self._tallies.get(queue, _Tally())
            return QueueCounts(
                self._depth(queue), tally.delayed, tally.in_flight, tally.done, tally.dead
            )

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Seconds since the head of ``queue`` was enqueued (its body's stamp); None if empty."""
        with self._lock:
            waiting = self._queues.get(queue)
            head = waiting[0].body if waiting else None
        stamp = enqueued_at(head) if head is not None else None
        return None if stamp is None else max(0.0, time.time() - stamp)

    def done_rate(self, queue: str, window_s: float) -> float | None:
        """Jobs done per second over ``window_s``, from the samples earlier calls took."""
        with self._lock:
            now, done = self._clock(), self._tallies.get(queue, _Tally()).done
            ring = self._samples.setdefault(queue, deque(maxlen=RING_SIZE))
            rate = rate_from(ring, now, done, window_s)
            if should_sample(ring, now):
                ring.appendleft((now, done))
            return rate

    def status(self, job_id: str) -> JobStatus | None:
        """The last known status of ``job_id``."""
        with self._lock:
            return self._statuses.get(job_id)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block until ``job_id`` is done or dead, or ``timeout_s`` passes."""
        deadline = self._clock() + timeout_s
        with self._lock:
            while True:
                found = self._statuses.get(job_id)
                if found is not None and found.status in FINISHED:
                    return found
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)
