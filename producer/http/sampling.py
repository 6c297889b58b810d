"""``HistorySampler``: ``conveyor serve`` writes each queue's numbers into the backend's history.

The history (``services.protocol.history``) is filled by sampling, never on a job's path: every
``interval_s`` the sampler reads each queue's counts and the age of its oldest waiting job
(``HistoryStore.look``: the reads the status command makes, for all queues in one round trip)
and records one ``Snapshot`` per queue, in one pipeline. The merge is idempotent, so two
services sampling one Redis do not double count. ``run_once(now)`` is one turn, with the time
given, so tests step it; ``run`` loops it on the event loop, the blocking reads in a worker
thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from services.errors import ConveyorError
from services.protocol.history import KeepsHistory

log = logging.getLogger("conveyor.serve.history")


class SampledBackend(KeepsHistory, Protocol):
    """What the sampler reads the queues from and writes the history to."""

    def queues(self) -> list[str]:
        """The names of the queues jobs were put on (``QueueInspector.queues``)."""


class HistorySampler:
    """Records every known queue's snapshot into ``backend``'s history each turn."""

    def __init__(
        self,
        backend: SampledBackend,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self.interval_s = interval_s
        self._clock = clock

    def run_once(self, now: float | None = None) -> int:
        """Sample every queue once (at ``now``, else the clock); returns how many."""
        at = self._clock() if now is None else now
        store = self._backend.history_store()
        found = store.look(self._backend.queues())
        store.record(at, found)
        return len(found)

    async def run(self) -> None:
        """Sample every ``interval_s`` until cancelled; a backend away only skips a turn."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except ConveyorError as exc:
                log.warning("history not sampled this turn: %s", exc)
            await asyncio.sleep(self.interval_s)
