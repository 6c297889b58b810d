"""The heartbeat thread that keeps a consumer's lease on its in-flight jobs alive, the
consumer's own view of that hold (``Hold``: until when may a prefetched job start), and the
tokens of its deliveries (``Tokens``: which are held, which run), which executor threads change
while the heartbeat reads them.

One daemon thread per consuming ``RedisQueue``, with its own connection, so a beat never waits
behind a blocked ``get`` and keeps going while a job runs pure Python in the main thread (the
interpreter switches threads every few milliseconds even then). Each beat extends the consumer's
lease in every queue it serves (leases are per queue) and then recovers the jobs of consumers
whose lease expired, in every registered queue.

Outages: a failed beat is logged (once per outage) and retried at the next interval; the lease
is lost only if Redis stays away longer than ``lease_s``. After an outage every lease looks
expired on the Redis clock, so this consumer waits one lease length before recovering anyone
else's jobs, which gives live consumers time to renew theirs first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence

log = logging.getLogger("conveyor.redis")

Renewal = tuple[str, int, int]
"""One queue's renewal reply: ``(queue, lease, handed-back count)`` (see ``Hold``)."""


class Heartbeat:
    """Calls ``beat`` then ``recover`` every ``interval_s`` until stopped; survives errors."""

    def __init__(
        self,
        beat: Callable[[], None],
        recover: Callable[[], int],
        *,
        interval_s: float,
        grace_s: float,
        restored: Callable[[], None] = lambda: None,
    ) -> None:
        self._beat = beat
        self._recover = recover
        self._restored = restored
        """Called when a beat succeeds after failed ones (Redis was away, or failed over)."""
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._recover_after = 0.0

    def start(self, name: str) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop beating; the lease then runs out unless the jobs are settled or released."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat_once()

    def beat_once(self) -> None:
        """One beat: renew, then recover (unless just back from an outage); never raises."""
        try:
            self._beat()
            if time.monotonic() >= self._recover_after:
                recovered = self._recover()
                if recovered:
                    log.info("recovered %d job(s) from consumers whose lease expired", recovered)
        except Exception as exc:  # the thread must outlive anything a beat can raise
            if not self._failing:
                log.warning("heartbeat failed, retrying every %.1fs: %s", self._interval_s, exc)
            self._failing = True
            self._recover_after = time.monotonic() + self._grace_s
            return
        if self._failing:
            log.info("heartbeat restored")
            self._failing = False
            self._restored()


class Hold:
    """What a consumer knows of its hold on its deliveries; read by the main thread, updated
    by whichever thread saw a reply (a FETCH, a heartbeat, a confirm).

    Leases are per queue (``T l``), so a renewal is a set of per-queue replies ``(queue, lease,
    handed)``: ``lease`` 1 existed, 0 created, -1 not renewed; ``handed`` the count of tokens
    handed back from this consumer in that queue. ``until()`` is the ``time.monotonic()`` at
    which the last renewal that covered every queue this consumer held deliveries in, and found
    them intact, was *sent*, plus the lease, less a safety margin. A renewal that finds
    deliveries taken (a handed-back count grew, or a lease had to be created in a queue where
    it held deliveries) makes the hold *lost*: ``until()`` stays in the past until ``confirmed``
    says which deliveries are still ours.
    """

    def __init__(self, lease_s: float) -> None:
        self._lease_s = lease_s
        self._margin_s = min(lease_s / 10, 1.0)
        self._until = -math.inf
        self._handed: dict[str, int] = {}
        self._lost = False
        self._lock = threading.Lock()

    def until(self) -> float:
        """The monotonic time up to which every delivery held is certainly still ours."""
        with self._lock:
            return -math.inf if self._lost else self._until

    def renewed(
        self, *, sent_at: float, replies: Sequence[Renewal], holding: Collection[str]
    ) -> bool:
        """Record the replies of renewals sent together at ``sent_at`` (``holding``: the queues
        where deliveries were held then); True when they show, for the first time, that
        deliveries were taken from us."""
        with self._lock:
            taken, renewed = False, set()
            for queue, lease, handed in replies:
                before = self._handed.get(queue)
                taken |= before is not None and handed > before
                taken |= lease == 0 and queue in holding
                self._handed[queue] = handed
                if lease >= 0:
                    renewed.add(queue)
            if taken:
                first = not self._lost
                self._lost = True
                return first
            if renewed and renewed.issuperset(holding) and not self._lost:
                self._until = max(self._until, sent_at + self._lease_s - self._margin_s)
            return False

    def confirmed(self, *, sent_at: float, replies: Sequence[Renewal]) -> None:
        """A confirm (one reply per queue with deliveries held) sorted out what is still held:
        the hold is sound again, renewed if every lease was still there."""
        with self._lock:
            for queue, _lease, handed in replies:
                self._handed[queue] = handed
            self._lost = False
            if not replies:
                return
            if all(lease == 1 for _queue, lease, _handed in replies):
                self._until = max(self._until, sent_at + self._lease_s - self._margin_s)
            else:
                self._until = -math.inf


Token = tuple[str, str]
"""A delivery's ``(queue, fencing token)``: tokens count per queue (``T seq``)."""


class Tokens:
    """The delivery tokens this process holds (``get`` returned them, not settled yet) and,
    of those, the ones running; every method takes one lock, so executor threads (``started``),
    the main thread (``get``, settlements) and the heartbeat (publishing the prefetched ones)
    never see a set change under them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[Token] = set()
        self._running: set[Token] = set()

    def add(self, tokens: Collection[Token]) -> None:
        """Deliveries ``get`` returned."""
        with self._lock:
            self._held.update(tokens)

    def settle(self, tokens: Collection[Token]) -> None:
        """Deliveries settled, handed back, or found no longer ours."""
        with self._lock:
            self._held.difference_update(tokens)
            self._running.difference_update(tokens)

    def start(self, tokens: Collection[Token], *, running: bool) -> None:
        """Mark held deliveries as running (or not); a token already settled is ignored."""
        with self._lock:
            if running:
                self._running.update(self._held.intersection(tokens))
            else:
                self._running.difference_update(tokens)

    def held(self) -> set[Token]:
        """A copy of the tokens held."""
        with self._lock:
            return set(self._held)

    def running(self) -> set[Token]:
        """A copy of the tokens held and running."""
        with self._lock:
            return set(self._running)

    def snapshot(self) -> tuple[set[Token], list[Token]]:
        """The tokens held and, sorted, the prefetched ones (held, not running), at one instant."""
        with self._lock:
            return set(self._held), sorted(self._held - self._running)
