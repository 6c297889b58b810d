"""``PutCoalescer``: puts made by concurrent tasks of one event loop go to Redis together.

An HTTP service has many requests in flight on one event loop, each wanting one small put. Sent
one by one, each costs a round trip and, in the client and in Redis, a command of its own.
Here a put waits for the end of the current turn of the event loop (``call_soon``), and every
put made during that turn is sent in one batch: the backend merges puts on the same queue into
one PUT call and pipelines the rest, so a burst of requests costs one round trip. The first
caller waits no longer than it takes the loop to finish what it was already doing::

    request 1 --put--+
    request 2 --put--+--> (end of the loop's turn) --> send([put 1, put 2, put 3]) --> Redis
    request 3 --put--+                                   |
          <-- flags of its own items, or the error ------+

A batch that fails as a whole fails every put in it with the same error
(``BackendUnavailableError``: not confirmed; putting the same ids again is safe); ``send`` may
also fail some puts only (a bounded queue that stayed full for one of them). A caller that goes
away (its task cancelled) leaves the batch as it is.

``lay_out`` is the bookkeeping of a merged call: which request owns which span of its jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PutRequest:
    """One caller's put: packed elements for one queue, due after ``delay_ms``."""

    queue: str
    elements: Sequence[bytes]
    delay_ms: int
    new_ids: bool


Segment = tuple[int, int, int]
"""``(request, first, last)``: a request's elements at ``first:last`` of one call."""


def lay_out(counts: Sequence[tuple[int, int]], size: int) -> list[list[Segment]]:
    """Requests' runs of elements (``(request, count)`` in order), laid end to end and cut
    into calls of ``size``: per call, which request owns which span of it."""
    calls: list[list[Segment]] = [[]]
    room = size
    for index, count in counts:
        left = count
        while left:
            if not room:
                calls.append([])
                room = size
            take = min(left, room)
            first = size - room
            calls[-1].append((index, first, first + take))
            left -= take
            room -= take
    return calls


Send = Callable[[Sequence[PutRequest]], Awaitable[list[list[bool] | Exception]]]
"""Stores a batch of puts; per request, in order, its flags or the error it failed with."""


class PutCoalescer:
    """Gathers the puts of one event-loop turn and hands them to ``send`` as one batch."""

    def __init__(self, send: Send, *, max_in_flight: int = 1) -> None:
        self._send = send
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[PutRequest, asyncio.Future[list[bool]]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        """Batches on their way (kept referenced, so the loop cannot drop them)."""

    async def put(self, request: PutRequest) -> list[bool]:
        """Store ``request`` with the others of this turn; its flags (False: id present)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[bool]] = loop.create_future()
        self._pending.append((request, done))
        if len(self._pending) == 1 and len(self._sending) < self._max_in_flight:
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        if not self._pending or len(self._sending) >= self._max_in_flight:
            return  # the batch on its way sends these when it is back (``_sent``)
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._deliver(batch))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._flush()  # the puts that came while it was on its way

    async def _deliver(self, batch: list[tuple[PutRequest, asyncio.Future[list[bool]]]]) -> None:
        try:
            results = await self._send([request for request, _ in batch])
        except asyncio.CancelledError:  # the loop is closing: so are its callers
            for _, done in batch:
                done.cancel()
            raise
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), outcome in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    async def drain(self) -> None:
        """Wait for the batches on their way (before the connection closes)."""
        while self._pending or self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
            await asyncio.sleep(0)
