"""``JobLimiter``: the worker's gate for jobs with limits (``services.limits``).

Contract of this role (every backend, proven by ``services.testing.contract.test_limits``):

* **Admit or park.** ``admit`` takes what the limits need for a delivery to start now: one
  permit of each ``ConcurrencyLimit`` (first), then one start of each ``RateLimit`` (last). If
  every limit says yes it returns True: run the job. Otherwise the permits it just took are
  released, the backend *parks* the job and it returns False: the delivery is no longer this
  consumer's (do not run it, do not settle it). Parking is not an attempt, not a failure and
  not a retry: attempts, counters and the error of the job are untouched, and its status is a
  waiting one (``scheduled`` while parked, ``queued`` once woken).
* **Parked jobs come back by themselves**, never by polling: woken at once when a permit they
  wait for is released; at their reserved start for a rate (the backend spreads the starts it
  refuses over the next free slots of the rate, so each job is refused at most once per
  backlog); and after a fallback delay (at most ``CONCURRENCY_RETRY_S``, sooner when a holder's
  lease lapses) in case a wake-up was lost.
* **Permits are held with the job.** A permit is held until this consumer settles the
  delivery (``ack``, ``retry``, ``dead_letter`` or ``hand_back`` release it), or, if the
  consumer dies, until its lease lapses (Redis: ``lease_s`` after the last heartbeat renewed
  it; memory: ``reclaim``). A release removes only the releasing delivery's own permit
  (fencing), so a stale holder cannot free someone else's.
* **Rates** are smooth (GCRA, no burst): starts of one key are granted ``interval_s`` apart
  on the backend's clock (Redis ``TIME``), so over any stretch of time the starts hold the
  rate. A parked job back at or after its reserved slot starts however late it is: after a
  stall of the consumers (a backlog between it and them), the jobs whose slots passed start
  back to back, a catch-up burst at most as large as the stall's share of the rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.limits import Limit
from services.protocol.records import Delivery

CONCURRENCY_RETRY_S = 5.0
"""Longest a job parked for a concurrency permit waits before it tries again by itself."""


@runtime_checkable
class JobLimiter(Protocol):
    """Admits a delivery under its job's limits, or parks it (a worker, before a start)."""

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        """True: the permits and the start are taken, run the job now. False: the job was
        parked and is no longer this consumer's (neither run nor settle it).

        Raises:
            BackendUnavailableError: the backend could not answer; nothing is held for the
                delivery, which is still this consumer's (hand it back).
        """
