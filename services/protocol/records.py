"""The records that cross the queue protocol: deliveries, completions, dead letters, statuses."""

from __future__ import annotations

from dataclasses import dataclass


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
class Cancellation:
    """What ``cancel`` did: the job was waiting and is now dead ("cancelled"), or it was not
    cancelled and ``status`` says why (running, done, dead; None: the id is unknown)."""

    job_id: str
    cancelled: bool
    status: JobStatus | None = None


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
