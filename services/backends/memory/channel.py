"""The child's side of a memory channel: the queue protocol as request/reply over two queues.

A ``MemoryConnector`` is made by the parent (``MemoryQueue.connector``) and handed to a child
process as a ``Process`` argument; ``ChannelQueue`` sends each call to the parent's serving
thread as a ``Request`` (a ``Call`` of a protocol method, or an ``Ack``) and waits for the reply,
noticing at once when the parent is gone.
"""

from __future__ import annotations

import math
import os
import queue as stdlib_queue
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue as MPQueue
from typing import Any, NamedTuple

from services.errors import BackendUnavailableError, ConfigError
from services.lifecycle import parent_alive
from services.limits import Limit
from services.protocol import (
    Backend,
    Cancellation,
    Completion,
    Connector,
    DeadLetter,
    Delivery,
    FleetControl,
    JobStatus,
    QueueCounts,
)

SERVED = frozenset(
    {
        "put",
        "put_many",
        "put_unique",
        "get",
        "admit",
        "confirm",
        "hand_back",
        "retry",
        "dead_letter",
        "reclaim",
        "counts",
        "depth",
        "dead_letters",
        "revive",
        "delete_dead",
        "cancel",
        "abort",
        "aborted",
        "queues",
        "status",
        "wait_finished",
    }
)
"""The protocol methods a ``Call`` may name (``ack`` travels as ``Ack``; the others need no
round trip)."""


class Call(NamedTuple):
    """A child's request: the protocol method ``method`` (one of ``SERVED``) with arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Ack(NamedTuple):
    """A child's ``ack``: ``(receipt, result)`` pairs. The parent settles by receipt and holds
    the bodies already, so they do not cross the pipe a second time (nor do the records)."""

    done: list[tuple[str, bytes | None]]


Request = Call | Ack
"""What a child sends over its channel; the parent answers each with ``(ok, value)``."""

POLL_S = 0.5
"""How often a waiting side looks up from its queue (closed channel, dead parent)."""
_REPLY_MARGIN_S = 30.0


@dataclass(frozen=True)
class MemoryConnector:
    """A child's end of its channel; picklable only as a ``Process`` argument (inheritance)."""

    consumer_id: str
    requests: MPQueue[Any]
    replies: MPQueue[Any]
    owner_pid: int
    """The process that holds the state; when it is gone, so is every queued job."""

    @property
    def durable(self) -> bool:
        return False  # the queue lives in owner_pid and dies with it

    def open(self) -> Backend:
        return ChannelQueue(self)


class ChannelQueue:
    """The queue protocol in a child process, each call a request/reply over its channel."""

    def __init__(self, connector: MemoryConnector) -> None:
        self._connector = connector
        self._lock = threading.Lock()
        self._owner_pid = connector.owner_pid
        self.consumer_id = connector.consumer_id

    def _call(self, method: str, *args: Any, wait_s: float = 0.0, **kwargs: Any) -> Any:
        return self._send(Call(method, args, kwargs), method, wait_s=wait_s)

    def _send(self, request: Request, method: str, *, wait_s: float = 0.0) -> Any:
        with self._lock:
            self._connector.requests.put(request)
            ok, value = self._reply(method, time.monotonic() + wait_s + _REPLY_MARGIN_S)
        if not ok:
            raise value
        return value

    def _reply(self, method: str, deadline: float) -> tuple[bool, Any]:
        # Wait in short slices so a dead parent is noticed at once, not after the deadline.
        while True:
            if not self._owner_alive():
                raise BackendUnavailableError("the memory backend's parent process is gone")
            try:
                reply: tuple[bool, Any] = self._connector.replies.get(timeout=POLL_S)
                return reply
            except stdlib_queue.Empty:
                if time.monotonic() > deadline:
                    raise BackendUnavailableError(
                        f"the memory backend's parent did not answer {method!r}"
                    ) from None

    def _owner_alive(self) -> bool:
        if self._owner_pid == os.getpid():
            return True  # a channel opened in the owner itself (tests)
        return parent_alive(self._owner_pid)

    # ``new_ids`` is accepted and not sent: the owner checks every state anyway (cheap there).
    def put(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> bool:
        return bool(self._call("put", queue, job_id, body, delay_s=delay_s))

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        flags: list[bool] = self._call("put_many", queue, list(items), delay_s=delay_s)
        return flags

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
        holder: str = self._call(
            "put_unique", queue, job_id, body, key=key, ttl_s=ttl_s, delay_s=delay_s
        )
        return holder

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        found: list[Delivery] = self._call(
            "get", list(queues), max_count=max_count, timeout_s=timeout_s, wait_s=timeout_s
        )
        return found

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        # Without the body: the parent holds it (the delivery is in flight there).
        return bool(self._call("admit", replace(delivery, body=b""), list(limits)))

    def ack(self, completions: Sequence[Completion]) -> int:
        done = [(c.delivery.receipt, c.result) for c in completions]
        rejected: int = self._send(Ack(done), "ack")
        return rejected

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        self._call("hand_back", list(deliveries))

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        return bool(self._call("retry", delivery, body, delay_s=delay_s, error=error))

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        return bool(self._call("dead_letter", delivery, reason))

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        chosen = None if suspects is None else list(suspects)
        released: int = self._call("reclaim", consumer_id, reason, suspects=chosen)
        return released

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = self._call("dead_letters", queue, limit=limit)
        return letters

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        ids = None if job_ids is None else list(job_ids)
        count: int = self._call("revive", queue, ids)
        return count

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        ids = None if job_ids is None else list(job_ids)
        count: int = self._call("delete_dead", queue, ids)
        return count

    def cancel(self, job_id: str) -> Cancellation:
        found: Cancellation = self._call("cancel", job_id)
        return found

    def abort(self, job_id: str) -> Cancellation:
        found: Cancellation = self._call("abort", job_id)
        return found

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        # Without their bodies: the parent needs the ids only, and this runs every half second.
        bare = [replace(d, body=b"") for d in deliveries]
        found: list[Delivery] = self._call("aborted", bare)
        receipts = {d.receipt for d in found}
        return [d for d in deliveries if d.receipt in receipts]

    def queues(self) -> list[str]:
        names: list[str] = self._call("queues")
        return names

    def depth(self, queue: str) -> int:
        found: int = self._call("depth", queue)
        return found

    def counts(self, queue: str) -> QueueCounts:
        found: QueueCounts = self._call("counts", queue)
        return found

    def held_until(self) -> float:
        """Always, without a round trip: the memory backend has no leases."""
        return math.inf

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        held: list[Delivery] = self._call("confirm", list(deliveries))
        return held

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Nothing to publish: without leases, only ``reclaim`` names the crash suspects."""

    def alarms(self) -> list[str]:
        return []

    def status(self, job_id: str) -> JobStatus | None:
        found: JobStatus | None = self._call("status", job_id)
        return found

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        found: JobStatus | None = self._call("wait_finished", job_id, timeout_s, wait_s=timeout_s)
        return found

    def check_server(self) -> list[str]:
        return []

    def connector(self, consumer_id: str) -> Connector:
        raise ConfigError(
            "a memory:// queue lives in one process tree; only its root process can start "
            "consumers (use `conveyor run`, or a redis:// URL for separate workers)"
        )

    # The schedulers' store lives in the root process, like the fleet: a scheduler runs there.
    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        raise _no_schedule()

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        raise _no_schedule()

    def leader(self, *, group: str = "") -> str | None:
        raise _no_schedule()

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        raise _no_schedule()

    def mark_fired(self, name: str, due: float) -> None:
        raise _no_schedule()

    def fleet(self) -> FleetControl:
        raise ConfigError(
            "a memory:// queue's fleet state lives in its root process, with the supervisor; "
            "a worker process has none (reach a `conveyor run` through its control socket)"
        )

    def close(self) -> None:
        """Nothing to release: the parent closes the channel when it releases this consumer."""


def _no_schedule() -> ConfigError:
    return ConfigError(
        "a memory:// queue's schedule lives in its root process, with its scheduler; a worker "
        "process has none"
    )
