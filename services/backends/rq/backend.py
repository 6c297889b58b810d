"""``RqQueue``: the queue protocol's roles on RQ's queues (see the package docstring).

Delivery contract on RQ's data, and where it differs from the Redis backend:

* **Taking** moves ids from ``rq:queue:<name>`` into ``StartedJobRegistry`` atomically
  (``taking``); the receipt is the registry entry ``<job id>:<execution id>``. Settling claims
  that entry first (``settling``), so a settlement after recovery is fenced.
* **Leases** are ``QueueSettings.lease_s`` long, renewed by a heartbeat thread; expired
  executions are recovered by any live consumer (``leases``). RQ has no "prefetched but not
  started" state: every job taken counts as running, so a crash counts each as a redelivery.
* **Puts** are RQ enqueues with ``unique=True`` (RQ's atomic put-if-absent by id): an id is
  stored once while its job hash lives (queued, running, finished within its result TTL).
* **Not in RQ's model, so not here**: aborting a running job (``abort`` cancels a waiting one
  only), prefetch-aware crash counting, atomic unique keys. Fleet control, limits and periodic
  leases are Conveyor's ``cv:`` keys on the same server, through ``RedisQueue``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.executions import Execution
from rq.job import Job as RqJob
from rq.utils import parse_composite_key

from services.backends import redact_url
from services.backends.redis.queue import RedisConnector, RedisQueue, new_consumer_id
from services.backends.rq import leases, putting
from services.backends.rq.mapping import (
    ATTEMPT,
    body_of,
    call_of,
    failure_text,
    redeliveries_of,
    serializer_named,
    started_key,
    text,
)
from services.backends.rq.reads import RqReads
from services.backends.rq.settling import Held, Settler
from services.backends.rq.taking import Taker
from services.backends.rq.urls import parse_url
from services.codec import decode_value
from services.errors import EncodeError
from services.limits import Limit
from services.protocol import (
    Backend,
    Cancellation,
    Completion,
    Connector,
    DeadLetter,
    Delivery,
    JobStatus,
    QueueCounts,
)
from services.protocol.fleet import FleetControl
from services.settings import QueueSettings

SETTLED_MEMORY = 10_000
"""Receipts settled lately, remembered so that a repeated settlement is a no-op, not fenced."""


def open_url(url: str, settings: QueueSettings) -> Backend:
    """The backend factory's entry point: RQ's queues on ``url`` (``rq+redis://``)."""
    return RqQueue(url, settings)


@dataclass(frozen=True, repr=False)
class RqConnector(RedisConnector):
    """A picklable recipe for a child to consume RQ's queues as ``consumer_id`` (the Redis
    backend's, opening an ``RqQueue``)."""

    def open(self) -> Backend:
        """Connect in the child."""
        return RqQueue(self.url, self.settings, consumer_id=self.consumer_id)


class RqQueue:
    """A ``Backend`` on RQ's keys in one Redis database."""

    def __init__(
        self, url: str, settings: QueueSettings, *, consumer_id: str | None = None
    ) -> None:
        target = parse_url(url)
        self.url = url
        self.settings = settings
        self.consumer_id = consumer_id or new_consumer_id()
        self._redis = Redis.from_url(target.redis_url, socket_timeout=settings.op_timeout_s + 1.0)
        self._serializer = serializer_named(target.serializer)
        self._settler = Settler(self._redis, self._serializer, self.consumer_id)
        self._taker = Taker(self._redis, self._serializer, self._settler, lease_s=settings.lease_s)
        self._reads = RqReads(self._redis, self._serializer)
        self._cv = RedisQueue(target.redis_url, settings, consumer_id=self.consumer_id)
        """Conveyor's own keys on the same server: fleet, limits, periodic leases."""
        self._held: dict[str, Held] = {}
        self._settled: dict[str, None] = {}
        """Receipts settled lately, oldest first (a dict: an ordered set with O(1) lookups)."""
        self._served: tuple[str, ...] = ()
        self._renewed_at = -math.inf
        self._beat = leases.Beat(self._step, interval_s=max(0.05, settings.lease_s / 3))
        self._worker: Any = None

    def __repr__(self) -> str:
        return f"RqQueue({redact_url(self.url)!r}, consumer_id={self.consumer_id!r})"

    # -- taking ------------------------------------------------------------------------------

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        """Take up to ``max_count`` RQ jobs, earlier queues first; wait up to ``timeout_s``."""
        self._serve(queues)
        deadline = time.monotonic() + timeout_s
        pause = 0.005
        while True:
            started = time.monotonic()
            taken = self._taker.take(queues, max_count)
            if taken:
                self._renewed_at = max(self._renewed_at, started)
                return self._deliveries(taken)
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    def _serve(self, queues: Sequence[str]) -> None:
        if set(queues) <= set(self._served):
            return
        self._served = tuple(sorted({*self._served, *queues}))
        if self._worker is not None:
            self._worker.register_death()
        self._worker = leases.rq_worker(
            self._redis, self.consumer_id, self._served, self._serializer
        )
        self._beat.start(f"conveyor-rq-heartbeat-{self.consumer_id}")

    def _deliveries(self, taken: list[Held]) -> list[Delivery]:
        out = []
        for held in taken:
            try:
                body = body_of(held.job)
            except EncodeError as exc:
                if self._settler.claim([held])[0]:
                    self._settler.fail(held, f"malformed message: {exc}")
                continue
            self._held[held.receipt] = held
            delivery = Delivery(
                held.job.id, held.job.origin, body, held.receipt, redeliveries_of(held.job)
            )
            out.append(delivery)
        return out

    def _step(self) -> None:
        """One heartbeat: renew held executions, recover expired ones, keep the RQ worker."""
        started = time.monotonic()
        leases.renew(self._redis, list(self._held.values()), self._taker.ttl_s)
        self._renewed_at = started
        if self._worker is not None:
            self._worker.heartbeat()
        leases.recover(
            self._settler,
            self._serializer,
            self._served,
            max_redeliveries=self.settings.max_redeliveries,
        )

    def _claimed(self, delivery: Delivery) -> Held | None:
        """The delivery's execution, claimed by this call; None when fenced or settled."""
        return self._claim([delivery])[0]

    def _claim(self, deliveries: Sequence[Delivery]) -> list[Held | None]:
        """Each delivery's execution, claimed by this call (one round trip for all of them);
        None where it was fenced or settled already."""
        found = [self._held.pop(d.receipt, None) or self._rebuild(d.receipt) for d in deliveries]
        won = iter(self._settler.claim([held for held in found if held is not None]))
        claimed: list[Held | None] = []
        for delivery, held in zip(deliveries, found, strict=True):
            if held is not None and next(won):
                self._remember(delivery.receipt)
                claimed.append(held)
            else:
                claimed.append(None)
        return claimed

    def _remember(self, receipt: str) -> None:
        self._settled[receipt] = None
        if len(self._settled) > SETTLED_MEMORY:
            del self._settled[next(iter(self._settled))]

    def _rebuild(self, receipt: str) -> Held | None:
        """A delivery another connection of this consumer took (e.g. before a restart)."""
        job_id, execution_id = parse_composite_key(receipt)
        job = RqJob.fetch_many([job_id], connection=self._redis, serializer=self._serializer)[0]
        if job is None:
            return None
        return Held(job, Execution(execution_id, job_id, self._redis, self.consumer_id))

    def ack(self, completions: Sequence[Completion]) -> int:
        """Record finished jobs in RQ (``Result``, ``FinishedJobRegistry``); fenced count."""
        fenced = 0
        done: list[tuple[Held, Any]] = []
        claimed = self._claim([completion.delivery for completion in completions])
        for completion, held in zip(completions, claimed, strict=True):
            if held is None:
                # a repeated settlement (a retried ack) is a no-op, not fenced
                fenced += completion.delivery.receipt not in self._settled
                continue
            raw = completion.result
            done.append((held, None if raw is None else decode_value(raw, what="result")))
        if done:
            self._settler.finish(done, default_ttl_s=self.settings.result_ttl_s)
        return fenced

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        """Requeue for the next attempt; an RQ ``Retry`` on the job decides count and interval."""
        held = self._claimed(delivery)
        if held is None:
            return delivery.receipt in self._settled  # settled already: a repeat, not fenced
        job = held.job
        if job.retries_left is not None:  # the producer asked RQ for Retry(max, interval)
            if job.retries_left <= 0:
                self._settler.fail(held, failure_text(error))
                return True
            delay_s = float(job.get_retry_interval())
            job.retries_left -= 1
        # The next attempt's body: its attempt number (and a raw body, kept as it is) go to
        # the job's meta; RQ's call (function, args) stays the one RQ stored.
        meta = call_of(body)[3]
        job.meta.update(meta)
        attempt = int(meta.get(ATTEMPT, 0))
        self._settler.again(held, attempt=attempt, delay_s=delay_s, error=error)
        return True

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Fail the job into RQ's ``FailedJobRegistry`` with ``reason`` as its exc_info."""
        held = self._claimed(delivery)
        if held is None:
            return delivery.receipt in self._settled  # settled already: a repeat, not fenced
        self._settler.fail(held, failure_text(reason))
        return True

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        """Put unfinished jobs back at the front of their queue, uncounted."""
        for held in self._claim(deliveries):
            if held is not None:
                self._settler.hand_back(held)

    def held_until(self) -> float:
        """When this consumer's executions may start lapsing (a third of a lease of margin)."""
        return self._renewed_at + self._taker.ttl_s * 2 / 3

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew, then keep the deliveries whose started-registry entry is still ours."""
        started = time.monotonic()
        leases.renew(self._redis, list(self._held.values()), self._taker.ttl_s)
        pipe = self._redis.pipeline(transaction=False)
        for delivery in deliveries:
            pipe.zscore(started_key(delivery.queue), delivery.receipt)
        scores = pipe.execute() if deliveries else []
        self._renewed_at = started
        return [
            d
            for d, s in zip(deliveries, scores, strict=True)
            if s is not None and d.receipt in self._held
        ]

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Nothing to record: RQ has no prefetched state, every job taken counts as running."""

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Running RQ jobs cannot be asked to abort here (``abort`` cancels waiting ones)."""
        return []

    # -- producing ---------------------------------------------------------------------------

    def put(
        self, queue: str, job_id: str, body: bytes, *, delay_s: float = 0.0, new_ids: bool = False
    ) -> bool:
        """Enqueue one RQ job unless its id is present (RQ's unique enqueue)."""
        return self.put_many(queue, [(job_id, body)], delay_s=delay_s, new_ids=new_ids)[0]

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Enqueue RQ jobs whose ids are absent, one flag per item (``putting``)."""
        return putting.put_many(self._settler.queue(queue), items, delay_s=delay_s)

    def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        """Store the job unless a live job holds ``key`` (``putting.put_unique``)."""
        holder = putting.holder(self._redis, queue, key)
        if holder is not None:
            found = self.status(holder)
            if found is not None and found.status in putting.LIVE:
                return found.job_id
        self.put(queue, job_id, body, delay_s=delay_s)
        putting.hold(self._redis, queue, key, job_id, ttl_s)
        return job_id

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Poll the job's status (RQ keeps no wake-up list) until done or dead."""
        return putting.wait_finished(self.status, job_id, timeout_s)

    # -- reads and administration (``reads``) ------------------------------------------------

    def status(self, job_id: str) -> JobStatus | None:
        return self._reads.status(job_id)

    def depth(self, queue: str) -> int:
        return self._reads.counts(queue).waiting

    def counts(self, queue: str) -> QueueCounts:
        return self._reads.counts(queue)

    def queues(self) -> list[str]:
        return self._reads.queues()

    def oldest_waiting_age(self, queue: str) -> float | None:
        return self._reads.oldest_waiting_age(queue)

    def done_rate(self, queue: str, window_s: float = 60.0) -> float | None:
        return self._reads.done_rate(queue, window_s)

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        return self._reads.dead_letters(queue, limit=limit)

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._reads.revive(queue, job_ids)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._reads.delete_dead(queue, job_ids)

    def cancel(self, job_id: str) -> Cancellation:
        return self._reads.cancel(job_id)

    def abort(self, job_id: str) -> Cancellation:
        """Cancel ``job_id`` if it waits; a running RQ job is left to finish (see module)."""
        return self._reads.cancel(job_id)

    # -- supervisor, fleet, limits, schedules --------------------------------------------------

    def connector(self, consumer_id: str) -> Connector:
        return RqConnector(self.url, self.settings, consumer_id)

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back what ``consumer_id`` held (its RQ worker's execution index)."""
        index = f"rq:worker:{consumer_id}:executions"  # rq.executions' template
        handed = 0
        for entry in self._redis.smembers(index):
            held = self._rebuild(text(entry))
            if held is None or not self._settler.claim([held])[0]:
                continue
            crashed = suspects is None or held.job.id in suspects
            limit = self.settings.max_redeliveries
            leases.settle_lost(self._settler, held, reason, crashed=crashed, limit=limit)
            handed += 1
        self._redis.delete(index, f"rq:worker:{consumer_id}")
        self._redis.srem("rq:workers", f"rq:worker:{consumer_id}")
        return handed

    def fleet(self) -> FleetControl:
        return self._cv.fleet()

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        return self._cv.admit(delivery, limits)

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        return self._cv.lead(scheduler_id, ttl_s, group=group)

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        self._cv.resign(scheduler_id, group=group)

    def leader(self, *, group: str = "") -> str | None:
        return self._cv.leader(group=group)

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        return self._cv.last_fired(names)

    def mark_fired(self, name: str, due: float) -> None:
        self._cv.mark_fired(name, due)

    def check_server(self) -> list[str]:
        return self._cv.check_server()

    def alarms(self) -> list[str]:
        return []

    def close(self) -> None:
        """Stop the heartbeat, record the RQ worker's death, release the connections."""
        self._beat.stop()
        if self._worker is not None:
            self._worker.register_death()
            self._worker = None
        self._cv.close()
        self._redis.close()
