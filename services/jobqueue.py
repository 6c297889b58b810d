"""The queue protocol: the only thing producers and consumers know about a backend.

Backends move opaque bytes (made by ``services.codec``); they never decode a job. The job id
travels next to the body so a backend can keep per-job bookkeeping without parsing it.

Data flow::

    Producer --put/put_many--> [queue] --get--> Worker --ack / retry / dead_letter / hand_back-->
                                  ^                |
                                  +--- reclaim ----+  (consumer died: its jobs come back)

Delivery contract (every backend, proven by ``tests/contract``):

* **At least once.** ``put`` returns only once the body is stored (memory: while the process tree
  lives; redis: in Redis). Failure raises ``BackendUnavailableError`` or ``QueueFullError``;
  nothing is ever dropped silently.
* **Put-if-absent by job id.** A put of an id that is queued, delayed, running, waiting for a
  retry, or finished within the result TTL stores nothing and reports the id as present. So a
  put whose reply was lost is retried (by the backend, and safely by any caller) with the same
  id and stored at most once. ``BackendUnavailableError`` from a put means "not confirmed": the
  job may or may not be stored; putting the same id again never makes a duplicate.
* **In flight until settled.** ``get`` moves up to ``max_count`` bodies from the named queues, in
  the given order (earlier queues first), into an in-flight state owned by this consumer, and
  returns them as ``Delivery`` records. A delivered job stays in the backend until exactly one of
  ``ack`` (done), ``retry`` (run again later), ``dead_letter`` (give up) or ``hand_back`` (hand back
  now, not counted as a failure) settles it.
* **Crashes hand jobs back.** When the consumer that holds a delivery dies, ``reclaim`` (called
  by whoever saw it die) or the backend's own lease expiry puts its in-flight jobs back at the
  front of their queue, those it was running with ``redeliveries + 1``. A job redelivered more than
  ``QueueSettings.max_redeliveries`` times is a poison job: it is dead-lettered instead, with the
  reason ("worker died: signal 9, 3 times").
* **Fencing.** Settling a delivery that the backend has since handed to another consumer is
  rejected: ``ack`` counts it in its return value, the other calls return False. Settling the
  same delivery twice (a retried call whose first reply was lost) is not a fencing event: it
  is accepted as a no-op and not counted.
* **Ownership before start.** A consumer starts a job only while ``held_until()`` is in the
  future; otherwise it asks ``confirm`` first, which renews its hold and drops the deliveries
  the backend has since handed to someone else (a consumer paused past its lease).
* **Counts are the backend's.** ``counts`` reports jobs waiting, delayed and in flight now, and
  the running totals of jobs settled done or dead, as the backend recorded them: a job counts
  once it is settled in the backend, never before.
* **Ordering** is FIFO per queue for fresh jobs; retries and redeliveries may overtake.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Delivery:
    """One job handed to one consumer; settle it exactly once."""

    job_id: str
    queue: str
    body: bytes
    receipt: str
    """Backend handle for settling this delivery (includes its fencing token)."""
    redeliveries: int = 0
    """How many times this job came back because the consumer holding it died."""


@dataclass(frozen=True)
class Completion:
    """A delivery that ran to completion, with its encoded return value (None: not kept)."""

    delivery: Delivery
    result: bytes | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A job the backend gave up on, with the reason (a traceback, "unknown job", ...)."""

    job_id: str
    queue: str
    body: bytes
    reason: str
    failed_at: float


@dataclass(frozen=True)
class JobStatus:
    """What a backend knows about one job id (``status`` in queued/running/done/failed/dead)."""

    job_id: str
    status: str
    attempts: int = 0
    error: str | None = None
    result: bytes | None = None


@dataclass(frozen=True)
class QueueCounts:
    """One queue's numbers, read cheaply (no listing): now, and totals since the backend began."""

    waiting: int = 0
    delayed: int = 0
    """Scheduled for later, including retries waiting for their backoff."""
    in_flight: int = 0
    """Delivered to a consumer and not settled yet (running or prefetched)."""
    done: int = 0
    """Settled as done, in total (a counter: compare two readings)."""
    dead: int = 0
    """Dead-lettered, in total (a counter: compare two readings)."""

    @property
    def unsettled(self) -> int:
        """Jobs the backend still holds that will run: waiting, delayed or in flight."""
        return self.waiting + self.delayed + self.in_flight


@runtime_checkable
class JobQueue(Protocol):
    """A connection to one backend, used by one process (a producer, a consumer, a supervisor)."""

    consumer_id: str
    """Who owns the deliveries that ``get`` returns through this connection."""

    def put(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> bool:
        """Store one job unless its id is present; with ``delay_s > 0`` it becomes visible after
        that many seconds. Returns False when the id was present (nothing stored).

        ``new_ids``: the caller generated these ids just now and never put them before: the
        backend may skip looking for them among running and finished jobs (a repeat within the
        call, or of a waiting marker, is still caught)."""

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store ``(job_id, body)`` pairs in one batch (one round trip where the backend can);
        one flag per item, False where the id was present and nothing was stored. An id
        repeated within the batch is stored once: its first item wins, the others are False.
        ``new_ids`` as in ``put``."""

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        """Take up to ``max_count`` jobs, earlier queues first; wait up to ``timeout_s`` for one."""

    def ack(self, completions: Sequence[Completion]) -> int:
        """Settle finished jobs; returns how many were rejected as fenced (no longer ours)."""

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        """Hand unfinished jobs back to the front of their queue now, not counted as failures."""

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        """Replace an in-flight job by ``body`` (its next attempt), visible after ``delay_s``."""

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move an in-flight job to the dead letters of its queue with ``reason``."""

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """A consumer died of ``reason``: hand back its in-flight jobs now; returns how many.

        Only the jobs in ``suspects`` (the ones it was running) count as crash redeliveries;
        the others it had merely prefetched go back uncounted. None: count them all.
        """

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue``, newest first."""

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on ``queue`` as fresh attempts."""

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed)."""

    def counts(self, queue: str) -> QueueCounts:
        """``queue``'s numbers in one cheap read (no listing of jobs or dead letters)."""

    def held_until(self) -> float:
        """``time.monotonic()`` until which every delivery this consumer holds is certainly
        still its own (its lease was renewed before then); ``math.inf`` where holds never lapse.
        """

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew this consumer's hold and return those of ``deliveries`` it still holds.

        The others were handed to another consumer (this one was paused past its lease): they
        must not run here, and settling them would be fenced. Deliveries already settled are
        not held either, and are dropped too. Order is kept.
        """

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Local bookkeeping, no round trip: these deliveries began (or, with ``running=False``,
        stopped) running. A backend with leases publishes it with its heartbeat, so that lease
        expiry counts only jobs that were running as crash suspects."""

    def alarms(self) -> list[str]:
        """Serious events this connection has seen (e.g. "Redis restarted empty: ..."), oldest
        first; sticky for the life of the connection, so health and status keep showing them."""

    def status(self, job_id: str) -> JobStatus | None:
        """What is known of ``job_id``, or None when nothing is (never seen, or expired)."""

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block (without busy polling) until ``job_id`` is done or dead; None on timeout."""

    def check_server(self) -> list[str]:
        """Warnings about the backend's setup (eviction, persistence, lost data); logged too."""

    def connector(self, consumer_id: str) -> Connector:
        """A picklable recipe for a child process to consume as ``consumer_id``.

        The supervisor calls this in the parent for each child it starts, and ``reclaim`` with
        the same id once the child is gone (which also frees what the connector held).
        """

    def close(self) -> None:
        """Release the connection; in-flight jobs are not settled (see ``reclaim``)."""


class Connector(Protocol):
    """A picklable recipe with which a child process opens its own ``JobQueue``."""

    @property
    def durable(self) -> bool:
        """False when the queue lives in the process that made this connector (``memory://``):
        if that process dies, every job queued there is lost, and nothing can be handed back."""

    def open(self) -> JobQueue:
        """Connect (in the child) and return the queue, owned by this connector's consumer."""
