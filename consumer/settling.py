"""Settling jobs with the backend: acks batched, and nothing dropped while the backend is away.

Every settlement (ack, retry, dead letter, hand-back) goes through a ``Ledger``. ``flush`` sends
them in order, acks in one batch; if the backend is unreachable the rest stay queued and are
sent again after a backoff, so an outage delays settlements but never loses them.

The ledger also counts what the backend accepted (done, retried, dead): a job counts only once
its settlement reached the backend and was not fenced, never when it merely finished here, so a
process that dies before its ack leaves the job uncounted (it runs again and counts then).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from consumer.backoff import backoff_s
from services.errors import BackendUnavailableError
from services.protocol import Completion, Delivery, JobTaker
from services.stats import Field, Stats

log = logging.getLogger("conveyor.worker")


@dataclass(frozen=True)
class _Ack:
    completion: Completion
    job: str


@dataclass(frozen=True)
class _Retry:
    delivery: Delivery
    body: bytes
    delay_s: float
    error: str
    job: str


@dataclass(frozen=True)
class _Bury:
    delivery: Delivery
    reason: str
    job: str


_Op = _Ack | _Retry | _Bury | Delivery  # a bare Delivery means "hand it back"


class Ledger:
    """Settlements waiting to reach the backend."""

    def __init__(
        self,
        queue: JobTaker,
        *,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._stats = stats
        self._clock = clock
        self._ops: deque[_Op] = deque()
        self._failures = 0
        self._not_before = 0.0
        self.fenced = 0

    def __len__(self) -> int:
        return len(self._ops)

    # ``job``: the job's registered name, for the per-job counters ("" when unknown).
    def ack(self, completion: Completion, job: str = "") -> None:
        self._ops.append(_Ack(completion, job))

    def retry(
        self, delivery: Delivery, body: bytes, delay_s: float, error: str, job: str = ""
    ) -> None:
        self._ops.append(_Retry(delivery, body, delay_s, error, job))

    def bury(self, delivery: Delivery, reason: str, job: str = "") -> None:
        self._ops.append(_Bury(delivery, reason, job))

    def hand_back(self, delivery: Delivery) -> None:
        self._ops.append(delivery)

    def flush(self) -> bool:
        """Send what is queued; False if the backend is unreachable (try again later)."""
        if not self._ops or self._clock() < self._not_before:
            return not self._ops
        try:
            while self._ops:
                self._send_next()
        except BackendUnavailableError as exc:
            self._failures += 1
            delay = backoff_s(self._failures, base_s=0.2, cap_s=5.0)
            self._not_before = self._clock() + delay
            log.warning(
                "backend unavailable (%s); %d settlements wait %.1f s", exc, len(self), delay
            )
            return False
        if self._failures:
            log.info("backend is back; settlements sent")
        self._failures = 0
        return True

    def _send_next(self) -> None:
        op = self._ops[0]
        if isinstance(op, _Ack):
            batch = self._leading(_Ack)
            acks: list[_Ack] = batch  # type: ignore[assignment]
            rejected = self._queue.ack([each.completion for each in acks])
            self.fenced += rejected
            # The backend says how many were fenced, not which: the last ones of the batch.
            accepted = len(acks) - rejected
            self._count_many(Field.DONE, acks[:accepted])
            self._count_many(Field.FENCED, acks[accepted:])
        elif isinstance(op, Delivery):
            batch = self._leading(Delivery)
            self._queue.hand_back(batch)  # type: ignore[arg-type]
        elif isinstance(op, _Retry):
            accepted = self._queue.retry(op.delivery, op.body, delay_s=op.delay_s, error=op.error)
            self._counted(Field.RETRIED, accepted, op.delivery, op.job)
            batch = [op]
        else:
            accepted = self._queue.dead_letter(op.delivery, op.reason)
            self._counted(Field.DEAD, accepted, op.delivery, op.job)
            batch = [op]
        for _ in batch:  # only now: a failed call above leaves its ops queued
            self._ops.popleft()

    def _leading(self, kind: type) -> list[_Op]:
        batch: list[_Op] = []
        for op in self._ops:
            if not isinstance(op, kind):
                break
            batch.append(op)
        return batch

    def _counted(self, field: Field, accepted: bool, delivery: Delivery, job: str) -> None:
        if not accepted:
            self.fenced += 1
        self._count(field if accepted else Field.FENCED, delivery, job)

    def _count_many(self, field: Field, acks: list[_Ack]) -> None:
        """Count ``acks`` in ``field``, one call per queue and job (not one per ack)."""
        if self._stats is None or not acks:
            return
        groups = Counter((each.completion.delivery.queue, each.job) for each in acks)
        for (queue, job), count in groups.items():
            self._stats.job_settled(field, queue, job, count)

    def _count(self, field: Field, delivery: Delivery, job: str) -> None:
        if self._stats is not None:
            self._stats.job_settled(field, delivery.queue, job)
