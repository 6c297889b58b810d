"""Enqueue-to-start latency history: the supervisor's pusher (``consumer.latency_push``) adds
only what its workers' histograms grew by, the stores add and cap (memory and a real
``redis-server``), and the dashboard's percentiles come from bucket bounds. Clocks are the
test's: the pusher's turn clock and its wall clock are injected."""

from __future__ import annotations

import time
from typing import Any

from consumer.latency_push import LatencyPusher
from producer.http.charts import percentiles
from services.backends.memory.history import MemoryHistory
from services.errors import BackendUnavailableError
from services.job import Job
from services.protocol.history import (
    MINUTE,
    QUARTER,
    HistoryStore,
    LatencyBucket,
    Resolution,
    pack_histogram,
    unpack_histogram,
)
from services.stats import Stats, _bucket, bucket_upper_s, new_block
from tests.test_history_store import store

T0 = 1_800_000_000.0  # a whole quarter hour


__all__ = ["store"]  # the fixture (memory and redis), imported for pytest


def started(stats: Stats, waited_s: float, count: int = 1) -> None:
    """``count`` jobs start on ``stats`` after waiting ``waited_s`` since their enqueue."""
    for _ in range(count):
        stats.job_started("q", Job("echo", enqueued_at=time.time() - waited_s))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """A store whose ``add_latency`` fails while ``down``."""

    def __init__(self) -> None:
        self.inner = MemoryHistory()
        self.down = False

    def add_latency(self, at: float, histogram: Any) -> None:
        if self.down:
            raise BackendUnavailableError("redis is down")
        self.inner.add_latency(at, histogram)


def total_jobs(buckets: list[LatencyBucket]) -> int:
    return sum(sum(h.values()) for _, h in buckets)


def test_the_pusher_adds_only_the_growth_each_time() -> None:
    # Given two workers' blocks, a memory store and a pusher every 5 s of an injected clock
    blocks = [Stats(new_block()), Stats(new_block())]
    store, wall = MemoryHistory(), Clock()
    pusher = LatencyPusher(store, lambda: [s.block for s in blocks], every_s=5.0, wall=wall)
    started(blocks[0], 2.0, count=3)
    started(blocks[1], 0.001)
    # When it turns at 0 s, again at 1 s (not due), then at 5 s after one more job
    assert pusher.run_once(0.0)
    assert not pusher.run_once(1.0)
    started(blocks[1], 2.0)
    wall.now = T0 + 60
    assert pusher.run_once(5.0)
    # Then each job is counted once, in the minute of the push that carried it
    minutes = store.latency_history(MINUTE)
    assert [start for start, _ in minutes] == [T0, T0 + 60]
    assert minutes[0][1] == {_bucket(0.001): 1, _bucket(2.0): 3}
    assert minutes[1][1] == {_bucket(2.0): 1}
    assert store.latency_history(QUARTER) == [(T0, {_bucket(0.001): 1, _bucket(2.0): 4})]
    # And a turn with nothing new pushes nothing
    assert not pusher.run_once(10.0)


def test_a_failed_push_keeps_the_delta_for_the_next_one() -> None:
    # Given a pusher whose backend is down
    block = Stats(new_block())
    store = FlakyStore()
    pusher = LatencyPusher(store, lambda: [block.block], every_s=1.0, wall=Clock())  # type: ignore[arg-type]
    started(block, 1.0, count=2)
    store.down = True
    # When it fails once, then the backend answers again
    assert not pusher.run_once(0.0)
    store.down = False
    assert pusher.run_once(1.0)
    # Then both jobs arrive, once
    assert total_jobs(store.inner.latency_history(MINUTE)) == 2


def test_stores_add_counts_and_cap_the_buckets(store: HistoryStore) -> None:
    # Given two pushes in one minute and more minutes than the cap
    store.add_latency(T0, {3: 2, 10: 1})
    store.add_latency(T0 + 30, {3: 1, 50: 4})
    for minute in range(1, MINUTE.keep + 5):
        store.add_latency(T0 + 60 * minute, {1: 1})
    # Then the counts of one minute add up, and only the newest 120 minutes stay
    minutes = store.latency_history(MINUTE)
    assert len(minutes) == MINUTE.keep
    assert minutes[0][0] == T0 + 60 * 5
    quarters = dict(store.latency_history(QUARTER))
    assert quarters[int(T0)] == {1: 14, 3: 3, 10: 1, 50: 4}


def test_the_first_minute_adds_up_on_every_store(store: HistoryStore) -> None:
    store.add_latency(T0, {3: 2, 10: 1})
    store.add_latency(T0 + 30, {3: 1, 50: 4})
    assert store.latency_history(MINUTE) == [(T0, {3: 3, 10: 1, 50: 4})]
    store.add_latency(T0, {})  # nothing to add: no write, no empty bucket
    assert len(store.latency_history(MINUTE)) == 1


def test_histograms_pack_round_trip() -> None:
    assert unpack_histogram(pack_histogram({7: 2, 1: 5, 3: 0})) == {1: 5, 7: 2}
    assert unpack_histogram(b"") == {}


def test_percentiles_are_bucket_upper_bounds_and_gaps_stay_gaps() -> None:
    # Given a minute where 90 jobs waited ~1 ms and 10 waited ~2 s
    fast, slow = _bucket(0.001), _bucket(2.0)
    buckets: list[LatencyBucket] = [(int(T0), {fast: 90, slow: 10})]
    minute: Resolution = MINUTE
    # When the hour's series is built two minutes later
    out = percentiles(buckets, minute, now=T0 + 120, points=3)
    # Then p50 is the fast bucket's bound, p95 and p99 the slow one's; other minutes are gaps
    assert out["start_p50_s"] == [bucket_upper_s(fast), None, None]
    assert out["start_p95_s"][0] == out["start_p99_s"][0] == bucket_upper_s(slow)
    assert bucket_upper_s(slow) >= 2.0
