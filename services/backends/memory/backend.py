"""The memory backend (``memory://``): jobs live in the memory of one process tree.

The parent process owns one ``MemoryState``. Its own code uses it directly (``MemoryQueue``);
each child process (a producer or a consumer) gets a channel of its own: two
``multiprocessing.Queue`` objects, requests child -> parent and replies parent -> child, served by
one parent thread per channel::

    producer 1 ==requests==> [serve thread] --+
               <==replies===                  |
    worker 1   ==requests==> [serve thread] --+--> MemoryState (queues, in-flight, dead letters)
               <==replies===                  |
    worker 2   ...                            +

Why a channel per child: a process SIGKILLed while blocked in ``Queue.get()`` (or while its
feeder thread writes) dies holding that queue's shared lock, and every other reader or writer of
the queue then hangs forever. Here no queue has two readers or two writers that can die
separately, so a dying child can only wedge its own channel, which the supervisor discards with
``reclaim``. Bodies are encoded before they are sent, so nothing can fail later in a feeder thread.
A channel carries protocol calls only: a ``Call`` names a protocol method (``channel.SERVED``)
that the serving thread makes on the parent's ``MemoryQueue``, and ``ack`` travels as an ``Ack``
of receipts and results (the parent holds the bodies; records cost more to pickle than pairs).

The fleet state (``fleet()``, a ``MemoryFleet``) lives in the parent too, outside the channels:
only the supervisor, in the parent, uses it.

The loss of the parent is the loss of every queued job: use a Redis URL when jobs must outlive
the process tree.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue as stdlib_queue
import threading
from collections.abc import Collection, Sequence
from multiprocessing.queues import Queue as MPQueue
from typing import Any

from services.backends.memory.channel import POLL_S, SERVED, Ack, Call, MemoryConnector, Request
from services.backends.memory.fleet import MemoryFleet
from services.backends.memory.history import MemoryHistory
from services.backends.memory.schedule import MemorySchedule
from services.backends.memory.state import MemoryState
from services.errors import ConfigError
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
from services.settings import QueueSettings

log = logging.getLogger("conveyor.memory")


def open_url(url: str, settings: QueueSettings) -> Backend:
    """A fresh memory backend owned by this process; ``memory://`` takes no options."""
    if url.rstrip("/") != "memory:":
        raise ConfigError(f"memory:// takes no host, path or options, got {url!r}")
    return MemoryQueue(MemoryState(settings), consumer_id=f"local:{os.getpid()}")


class _Channels:
    """The parent's channels to its children, by consumer id, each with a serving thread."""

    def __init__(self, state: MemoryState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._open: dict[str, tuple[MPQueue[Any], MPQueue[Any], threading.Event]] = {}
        self._retired: set[str] = set()

    def open(self, consumer_id: str) -> MemoryConnector:
        # Spawn-context queues can be handed to children of any start method.
        ctx = multiprocessing.get_context("spawn")
        requests: MPQueue[Any] = ctx.Queue()
        replies: MPQueue[Any] = ctx.Queue()
        closed = threading.Event()
        with self._lock:
            for retired in self._retired:
                self._close_locked(retired)
            self._retired.clear()
            self._close_locked(consumer_id)
            self._open[consumer_id] = (requests, replies, closed)
        local = MemoryQueue(self._state, consumer_id=consumer_id)
        thread = threading.Thread(
            target=_serve,
            args=(local, self._state, requests, replies, closed),
            name=f"conveyor-memory-{consumer_id}",
            daemon=True,
        )
        thread.start()
        return MemoryConnector(consumer_id, requests, replies, owner_pid=os.getpid())

    def retire(self, consumer_id: str) -> None:
        """Close ``consumer_id``'s channel at the next ``open``: until then a consumer that
        was only paused still reaches the state, which fences its late settlements."""
        with self._lock:
            if consumer_id in self._open:
                self._retired.add(consumer_id)

    def close_all(self) -> None:
        with self._lock:
            for consumer_id in list(self._open):
                self._close_locked(consumer_id)

    def _close_locked(self, consumer_id: str) -> None:
        found = self._open.pop(consumer_id, None)
        if found is None:
            return
        requests, replies, closed = found
        closed.set()
        for channel in (requests, replies):
            channel.cancel_join_thread()  # never block exit on a dead child's full pipe
            channel.close()


def _serve(
    local: MemoryQueue,
    state: MemoryState,
    requests: MPQueue[Any],
    replies: MPQueue[Any],
    closed: threading.Event,
) -> None:
    """Answer one child's calls until its channel is closed (the parent's serving thread)."""
    while not closed.is_set():
        try:
            request: Request = requests.get(timeout=POLL_S)
        except stdlib_queue.Empty:
            continue
        except (OSError, EOFError, ValueError):
            return  # the channel was closed under us
        try:
            reply: tuple[bool, Any] = (True, _answer(local, state, request))
            if isinstance(request, Call) and request.method == "get" and closed.is_set():
                local.hand_back(reply[1])  # the child died while we waited
                return
        except Exception as exc:  # the child re-raises it; the parent keeps serving
            reply = (False, exc)
        try:
            replies.put(reply)
        except (OSError, ValueError):
            return


def _answer(local: MemoryQueue, state: MemoryState, request: Request) -> Any:
    """Make the protocol call that ``request`` stands for, as ``local``'s consumer."""
    if isinstance(request, Ack):
        return state.ack_receipts(request.done)  # ``ack`` by receipt: what ``local.ack`` does
    if request.method not in SERVED:
        raise ConfigError(f"the memory backend does not serve {request.method!r} to children")
    return getattr(local, request.method)(*request.args, **request.kwargs)


class MemoryQueue:
    """The queue protocol over a ``MemoryState`` in this process."""

    def __init__(self, state: MemoryState, *, consumer_id: str) -> None:
        self._state = state
        self._channels = _Channels(state)
        self.consumer_id = consumer_id
        self._fleet: MemoryFleet | None = None
        self._schedule = MemorySchedule()
        """The schedulers' store (``ScheduleStore``): like the fleet, the root process's only."""
        self._history = MemoryHistory(self)
        """The queues' history (``HistoryStore``): the root process's only, like the fleet."""

    # ``new_ids`` is accepted and ignored: checking every state in memory costs next to nothing.
    def put(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> bool:
        return self._state.put_many(queue, [(job_id, body)], delay_s)[0]

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        return self._state.put_many(queue, items, delay_s)

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
        item = (job_id, body)
        return self._state.put_unique(queue, item, key=key, ttl_s=ttl_s, delay_s=delay_s)

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        return self._state.get(self.consumer_id, queues, max_count, timeout_s)

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        return self._state.admit(self.consumer_id, delivery, limits)

    def ack(self, completions: Sequence[Completion]) -> int:
        return self._state.ack(completions)

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        self._state.hand_back(deliveries)

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        return self._state.retry(delivery, body, delay_s, error)

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        return self._state.dead_letter(delivery, reason)

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        self._channels.retire(consumer_id)
        return self._state.reclaim(consumer_id, reason, suspects)

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        return self._state.dead_letters(queue, limit)

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._state.revive(queue, job_ids)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._state.delete_dead(queue, job_ids)

    def cancel(self, job_id: str) -> Cancellation:
        return self._state.cancel(job_id)

    def abort(self, job_id: str) -> Cancellation:
        return self._state.abort(job_id)

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return self._state.aborted(deliveries)

    def queues(self) -> list[str]:
        return self._state.queues()

    def depth(self, queue: str) -> int:
        return self._state.depth(queue)

    def counts(self, queue: str) -> QueueCounts:
        return self._state.counts(queue)

    def oldest_waiting_age(self, queue: str) -> float | None:
        return self._state.oldest_waiting_age(queue)

    def done_rate(self, queue: str, window_s: float = 60.0) -> float | None:
        return self._state.done_rate(queue, window_s)

    def held_until(self) -> float:
        """Always: the memory backend has no leases, only ``reclaim`` takes jobs away."""
        return math.inf

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return self._state.confirm(self.consumer_id, deliveries)

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Nothing to publish: without leases, only ``reclaim`` names the crash suspects."""

    def alarms(self) -> list[str]:
        return []

    def status(self, job_id: str) -> JobStatus | None:
        return self._state.status(job_id)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        return self._state.wait_finished(job_id, timeout_s)

    def check_server(self) -> list[str]:
        return []

    def connector(self, consumer_id: str) -> Connector:
        return self._channels.open(consumer_id)

    def fleet(self) -> MemoryFleet:
        """The fleet of this process tree, made at the first call. Children never need it (only
        the supervisor, which holds this root queue, beats and reconciles), so it is not served
        over their channels; another process reaches it through ``conveyor run``'s control
        socket, which serves it."""
        if self._fleet is None:
            self._fleet = MemoryFleet()
        return self._fleet

    def history_store(self) -> MemoryHistory:
        """The queues' history of this process tree (not served over children's channels)."""
        return self._history

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        return self._schedule.lead(scheduler_id, ttl_s, group=group)

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        self._schedule.resign(scheduler_id, group=group)

    def leader(self, *, group: str = "") -> str | None:
        return self._schedule.leader(group=group)

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        return self._schedule.last_fired(names)

    def mark_fired(self, name: str, due: float) -> None:
        self._schedule.mark_fired(name, due)

    def close(self) -> None:
        self._channels.close_all()
