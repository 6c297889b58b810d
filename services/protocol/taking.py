"""``JobTaker``: the worker's role. It takes jobs and settles each delivery exactly once.

Delivery contract of this role (every backend, proven by ``services.testing.contract``):

* **In flight until settled.** ``get`` moves up to ``max_count`` bodies from the named queues, in
  the given order (earlier queues first), into an in-flight state owned by this consumer, and
  returns them as ``Delivery`` records. A delivered job stays in the backend until exactly one of
  ``ack`` (done), ``retry`` (run again later), ``dead_letter`` (give up) or ``hand_back`` (hand back
  now, not counted as a failure) settles it.
* **Fencing.** Settling a delivery that the backend has since handed to another consumer is
  rejected: ``ack`` counts it in its return value, the other calls return False. Settling the
  same delivery twice (a retried call whose first reply was lost) is not a fencing event: it
  is accepted as a no-op and not counted.
* **Ownership before start.** A consumer starts a job only while ``held_until()`` is in the
  future; otherwise it asks ``confirm`` first, which renews its hold and drops the deliveries
  the backend has since handed to someone else (a consumer paused past its lease).
* **Crash suspects.** ``started`` tells the backend which deliveries are running, so that when
  this consumer dies only those count as crash redeliveries (see ``ConsumerControl``).
* **Aborts.** ``aborted`` answers which of the given running deliveries an operator asked to
  abort (``QueueAdmin.abort``), in one cheap round trip; the consumer stops those and settles
  them with ``dead_letter`` (reason starting ``"aborted"``), never ``retry``.
* **Ordering** is FIFO per queue for fresh jobs; retries and redeliveries may overtake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.protocol.records import Completion, Delivery


@runtime_checkable
class JobTaker(Protocol):
    """Takes jobs and settles them, as one consumer (a worker)."""

    consumer_id: str
    """Who owns the deliveries that ``get`` returns through this connection."""

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

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Those of ``deliveries`` (running here) whose jobs an operator asked to abort, in
        order; one round trip per queue at most, none when no abort is pending anywhere."""

    def alarms(self) -> list[str]:
        """Serious events this connection has seen (e.g. "Redis restarted empty: ..."), oldest
        first; sticky for the life of the connection, so health and status keep showing them."""

    def close(self) -> None:
        """Release the connection; in-flight jobs are not settled (see ``reclaim``)."""
