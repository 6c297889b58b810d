"""How a consumer takes jobs: FETCH per queue in priority order, and the idle wait.

FETCH handles one queue (``scripts``). ``Fetcher.take`` FETCHes the first queue for up to
``max_count`` jobs; if it returned fewer, the next queue for the rest, and so on: the
documented priority order, and a single-queue consumer (the common case) keeps exactly one
round trip (several capped calls of one queue go in one pipeline).

With nothing to take, it waits on the queues' *doorbells* (``T b``, at most one item, rung by
every push) with ``BLPOP``, in chunks of at most ``BLOCK_CHUNK_S`` (and until the next delayed
job is due), so delayed jobs are moved in time and a dead Redis is noticed:

* **one queue**: the FETCH is pipelined behind the ``BLPOP`` on the blocking connection; Redis
  holds a blocked client's later commands and runs them the moment the ``BLPOP`` returns, so a
  woken consumer has its jobs without a second round trip;
* **several queues whose bells share a node** (always on a single node or behind Sentinel):
  one ``BLPOP`` on all bells, then the priority-ordered pass (a FETCH pipelined per queue would
  take jobs from every queue at once, more than asked);
* **several slots** (Redis Cluster, queues on different shards; ``BLPOP`` takes one slot's keys
  only): the bells of each slot are waited on in turn, ``SLOT_WAIT_S`` each, then the pass. A
  job put on an idle queue of another shard waits up to about ``SLOT_WAIT_S`` x (slots - 1)
  longer to start: the price of queues on different shards.

A shard that fails (a master failing over) does not stop the others: its queues are skipped in
the pass and in the wait, and only when every queue's shard fails does ``take`` raise.
``skipped`` tells the backend that a FETCH may have failed on its way back, so it compares its
in-flight records with what it holds before the next fetch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from services.backends.redis import keys
from services.backends.redis.calls import Scripts, ms
from services.backends.redis.connection import guarded
from services.backends.redis.lease import Renewal
from services.backends.redis.reads import BLOCK_CHUNK_S
from services.backends.redis.routing import chunked, slot_groups
from services.errors import BackendUnavailableError
from services.settings import QueueSettings

MAX_BATCH = 1000
"""Most jobs one ``get`` takes."""
FETCH_CAP = 100
"""Most jobs one FETCH call takes; a bigger batch is several calls in one pipeline."""
SLOT_WAIT_S = 0.05
"""How long the idle wait listens on one slot's bells before the next slot's (cluster only)."""

Taken = tuple[str, int, bytes]
"""One job FETCH took: ``(queue, token, element)``."""
Note = Callable[[float, set[str], list[Renewal]], None]
"""Told of every FETCH send: when it was sent, the queues held in then, the lease replies."""


class Fetcher:
    """Takes jobs for one consumer (held by ``RedisQueue``)."""

    def __init__(
        self,
        scripts: Scripts,
        blocking: Any,
        consumer_id: str,
        settings: QueueSettings,
        *,
        note: Note,
        holding: Callable[[], set[str]],
    ) -> None:
        self._scripts = scripts
        self._blocking = blocking
        self._consumer_id = consumer_id
        self._settings = settings
        self._note = note
        self._holding = holding
        self.skipped = False
        """The last ``take`` went on past a queue whose shard failed: a FETCH that failed on
        the way back may have moved jobs we never saw (the backend hands those back later)."""

    def take(self, queues: Sequence[str], max_count: int, timeout_s: float) -> list[Taken]:
        """Up to ``max_count`` jobs in priority order; waits up to ``timeout_s`` if none."""
        deadline = time.monotonic() + timeout_s
        wanted = min(max_count, MAX_BATCH)
        self.skipped = False
        now_ms, due_ms, taken = self._pass(queues, wanted)
        while not taken:
            wait_s = min(deadline - time.monotonic(), BLOCK_CHUNK_S)
            if due_ms >= 0:
                wait_s = min(wait_s, (due_ms - now_ms) / 1000)
            if wait_s > 0:
                now_ms, due_ms, taken = self._wait(queues, wanted, wait_s)
            elif deadline <= time.monotonic():
                return []
            else:  # a delayed job is due now
                now_ms, due_ms, taken = self._pass(queues, wanted)
        return taken

    def _calls(self, want: int) -> list[tuple[Any, ...]]:
        settings = self._settings
        limits = (
            ms(settings.lease_s),
            settings.dead_letter_max,
            ms(settings.dead_letter_max_age_s),
        )
        return [(self._consumer_id, len(w), *limits) for w in chunked(range(want), FETCH_CAP)]

    def _pass(
        self, queues: Sequence[str], wanted: int, first: list[Any] | None = None
    ) -> tuple[int, int, list[Taken]]:
        """FETCH the queues in order until ``wanted`` jobs are taken; ``first``: the first
        queue's replies, already fetched. Returns Redis's clock (ms), the earliest due time of
        a delayed job (-1: none known) and the jobs."""
        now_ms, due_ms = 0, -1
        taken: list[Taken] = []
        failed: list[BackendUnavailableError] = []
        for index, queue in enumerate(queues):
            want = wanted - len(taken)
            if want <= 0:
                break
            if index == 0 and first is not None:
                replies = first
            else:
                try:
                    replies = self._send(queue, functools.partial(self._fetch, queue, want))
                except BackendUnavailableError as exc:
                    # One shard failing over must not stop the queues on the others.
                    failed.append(exc)
                    continue
            for now, due, _lease, _handed, items in replies:
                now_ms = int(now)
                due_ms = int(due) if due_ms < 0 or 0 <= due < due_ms else due_ms
                taken.extend((queue, int(items[i]), items[i + 1]) for i in range(0, len(items), 2))
        if failed and len(failed) == len(queues):
            raise failed[0]
        self.skipped = self.skipped or bool(failed)
        return now_ms, due_ms, taken

    def _fetch(self, queue: str, want: int) -> list[Any]:
        return self._scripts.run_many("FETCH", "get", queue, self._calls(want))

    def _send(self, queue: str, send: Callable[[], list[Any]]) -> list[Any]:
        """Send FETCH calls of ``queue`` and tell ``note`` what they say about our leases."""
        holding, sent_at = self._holding(), time.monotonic()
        replies = send()
        self._note(sent_at, holding, [(queue, int(r[2]), int(r[3])) for r in replies])
        return replies

    def _wait(
        self, queues: Sequence[str], wanted: int, wait_s: float
    ) -> tuple[int, int, list[Taken]]:
        """Wait on the doorbells (see the module docstring), then take what is there."""
        bells = [keys.of(queue).bell for queue in queues]
        groups = slot_groups(self._blocking, bells)
        if len(groups) == 1 and len(queues) == 1:
            queue = queues[0]
            first = self._send(queue, lambda: self._blpop_then_fetch(queue, bells, wait_s, wanted))
            return self._pass(queues, wanted, first)
        if len(groups) == 1:
            self._blpop(bells, wait_s)
        else:
            end = time.monotonic() + wait_s
            self._wait_in_turn([[bells[i] for i in group] for group in groups], end)
        return self._pass(queues, wanted)

    def _wait_in_turn(self, groups: list[list[str]], end: float) -> None:
        """BLPOP each slot's bells in turn, ``SLOT_WAIT_S`` each, until one rings or ``end``."""
        while True:
            failed: list[BackendUnavailableError] = []
            for bells in groups:
                left = end - time.monotonic()
                try:
                    if left <= 0 or self._blpop(bells, min(left, SLOT_WAIT_S)):
                        return
                except BackendUnavailableError as exc:  # that shard is failing over
                    failed.append(exc)
            if len(failed) == len(groups):
                raise failed[0]

    def _blpop(self, bells: list[str], wait_s: float) -> bool:
        with guarded("get", self._scripts.where):
            # Redis reads the timeout in milliseconds; 0 would mean "forever".
            return self._blocking.blpop(bells, timeout=max(round(wait_s, 3), 0.001)) is not None

    def _blpop_then_fetch(
        self, queue: str, bells: list[str], wait_s: float, wanted: int
    ) -> list[Any]:
        """BLPOP the doorbell and FETCH in one round trip; returns FETCH's replies."""
        calls = self._calls(wanted)
        pipe = self._blocking.pipeline(transaction=False)
        pipe.blpop(bells, timeout=max(round(wait_s, 3), 0.001))
        for args in calls:
            self._scripts.add(pipe, "FETCH", queue, args)
        with guarded("get", self._scripts.where):
            try:
                return list(pipe.execute()[1:])
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                pass
        return self._fetch(queue, wanted)
