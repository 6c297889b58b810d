"""Queue depth by state, read from the backend when a scrape asks, in bounded time.

A scrape must answer even when the backend is away: ``QueueDepth`` reads ``counts`` queue by
queue on a connection of its own (open it with a short ``op_timeout_s``: every backend call is
bounded by it) and stops at the first failure, so a scrape waits at most one timeout for a
backend that does not answer. It then shows no depth at all and ``conveyor_backend_up 0``.

``read_depth`` is the same for a service on an asyncio event loop (``conveyor serve``): one
round trip for every queue the backend knows, under a deadline of ``SCRAPE_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from services.errors import ConveyorError
from services.metrics.families import Family, depth_families
from services.protocol import QueueCounts, QueueInspector

log = logging.getLogger("conveyor.metrics")

SCRAPE_TIMEOUT_S = 2.0
"""``op_timeout_s`` of the connection a scrape reads through: below Prometheus's default
10 s scrape timeout, even with a few queues answering slowly before one fails."""


class QueueDepth:
    """The depth families of ``queues`` (a sequence, or a callable giving the current ones)."""

    def __init__(
        self, inspector: QueueInspector, queues: Iterable[str] | Callable[[], Iterable[str]]
    ) -> None:
        self._inspector = inspector
        self._queues = queues

    def families(self) -> list[Family]:
        queues = self._queues() if callable(self._queues) else self._queues
        counts: dict[str, QueueCounts] = {}
        for queue in queues:
            try:
                counts[queue] = self._inspector.counts(queue)
            except ConveyorError as exc:
                log.warning("metrics: cannot read the queues' depth: %s", exc)
                return depth_families({}, up=False)
        return depth_families(counts, up=True)


class AsyncCounts(Protocol):
    """What ``read_depth`` needs of an asyncio backend (``services.protocol.aio``)."""

    async def queues(self) -> list[str]: ...

    async def counts_many(self, queues: Sequence[str]) -> list[QueueCounts]: ...


async def read_depth(
    inspector: AsyncCounts, *, timeout_s: float = SCRAPE_TIMEOUT_S
) -> list[Family]:
    """The depth families of every queue ``inspector`` knows, given up after ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            queues = await inspector.queues()
            counts = await inspector.counts_many(queues) if queues else []
    except (ConveyorError, TimeoutError) as exc:
        log.warning("metrics: cannot read the queues' depth: %s", exc or "timed out")
        return depth_families({}, up=False)
    return depth_families(dict(zip(queues, counts, strict=True)), up=True)
