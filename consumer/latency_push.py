"""Push the workers' enqueue-to-start latency histogram into the backend's history.

Each worker counts, per job it starts, how long the job waited since its enqueue
(``Stats.job_started``, into its shared stats block). The supervisor's fleet member calls
``run_once(now)`` every turn of its loop; every ``every_s`` this sums the blocks and adds what
grew since the last push to the backend's latency buckets (``HistoryStore.add_latency``)::

    blocks --started_histogram--> now;  now - pushed --add_latency(wall(), delta)--> backend
                                        pushed = now        (only once the backend took it)

Each supervisor pushes only its own workers' counts, each once, so the additive buckets never
double count. A push that fails keeps the delta: the next push carries it (counted in the
minute it finally lands, not the one the jobs started in); nothing is lost while the
supervisor lives, and a supervisor that dies takes its unpushed seconds with it. The blocks of
removed seats stay in the pool's list, so the summed histogram only grows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from services.errors import BackendUnavailableError, ConfigError
from services.protocol.history import HistoryStore
from services.stats import started_histogram

log = logging.getLogger("conveyor.fleet")

PUSH_EVERY_S = 5.0
"""How often a supervisor pushes (the dashboard samples every 10 s by default)."""


class LatencyPusher:
    """Adds the growth of ``blocks()``' enqueue-to-start histogram to ``store``, every
    ``every_s`` of the caller's clock; ``wall`` (epoch seconds) picks the bucket."""

    def __init__(
        self,
        store: HistoryStore,
        blocks: Callable[[], Iterable[Any]],
        *,
        every_s: float = PUSH_EVERY_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._blocks = blocks
        self._every_s = every_s
        self._wall = wall
        self._pushed: list[float] | None = None
        self._next = float("-inf")
        self._failing = False

    def run_once(self, now: float) -> bool:
        """Push if due at ``now``; whether the backend took a push this turn."""
        if now < self._next:
            return False
        self._next = now + self._every_s
        return self.push()

    def push(self) -> bool:
        """Push the growth since the last push now (a stop flushes with it)."""
        seen = started_histogram(self._blocks())
        pushed = self._pushed or [0.0] * len(seen)
        delta = {i: int(c - p) for i, (c, p) in enumerate(zip(seen, pushed, strict=True)) if c > p}
        if not delta:
            return False
        try:
            self._store.add_latency(self._wall(), delta)
        except (BackendUnavailableError, ConfigError) as exc:
            if not self._failing:
                log.warning("fleet: latency history not pushed (kept for the next try): %s", exc)
            self._failing = True
            return False
        self._failing = False
        self._pushed = seen
        return True
