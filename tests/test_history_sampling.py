"""The history's writer and reader in ``conveyor serve``, stepped with given times: the sampler
(``producer.http.sampling``) on the memory backend, and the chart series
(``producer.http.charts``) built from buckets: rates from totals, gaps, the bucket in progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from producer.http.charts import axis, series
from producer.http.readonly import from_browser
from producer.http.sampling import HistorySampler, SampledBackend
from services.backends import open_queue
from services.protocol import Backend, KeepsHistory
from services.protocol.history import MINUTE, QUARTER, Snapshot

T0 = 1_800_000_000  # a whole quarter hour


@pytest.fixture
def memory() -> Iterator[Backend]:
    backend = open_queue("memory://")
    yield backend
    backend.close()


def test_the_sampler_records_each_queue_it_knows(memory: Backend) -> None:
    # Given two queues with jobs waiting
    memory.put("a", "1" * 32, b'{"enqueued_at": 0}')
    memory.put("b", "2" * 32, b"{}")
    sampler = HistorySampler(cast(SampledBackend, memory), 10.0, clock=lambda: T0 + 5.0)
    # When it takes one turn
    assert sampler.run_once() == 2
    # Then each queue's minute holds its backlog
    assert isinstance(memory, KeepsHistory)
    found = memory.history_store().history(["a", "b"], MINUTE)
    assert [start for start, _ in found["a"]] == [T0]
    assert found["a"][0][1].waiting == 1
    assert found["a"][0][1].oldest_waiting_ms > 0
    assert found["b"][0][1].oldest_waiting_ms == 0


def test_rates_come_from_neighbouring_buckets_and_the_current_totals() -> None:
    # Given two sampled minutes and a gap, and the totals read now in the third minute
    buckets = {
        "q": [(T0, Snapshot(done=0, waiting=120)), (T0 + 60, Snapshot(done=60, waiting=60))],
    }
    now = T0 + 60 * 3 + 30
    current = {"q": Snapshot(done=100)}
    chart = series(buckets, MINUTE, now=now, points=5, current=current)
    # Then the first minute ran 1 job/s, the second's rate is unknown (nobody looked in the
    # third), and the minute in progress has no first look: gaps, never invented numbers
    assert chart["t"] == axis(MINUTE, now, 5) == [T0 - 60, T0, T0 + 60, T0 + 120, T0 + 180]
    assert chart["done_per_s"] == [None, 1.0, None, None, None]
    assert chart["backlog"] == [None, 120.0, 60.0, None, None]


def test_the_bucket_in_progress_runs_to_now_and_queues_add_up() -> None:
    buckets = {
        "a": [(T0, Snapshot(done=10, dead=0, oldest_waiting_ms=2000))],
        "b": [(T0, Snapshot(done=0, dead=5, oldest_waiting_ms=500))],
    }
    current = {"a": Snapshot(done=40), "b": Snapshot(done=30, dead=2)}  # b: Redis emptied
    chart = series(buckets, QUARTER, now=T0 + 30, points=1, current=current)
    assert chart["done_per_s"] == [2.0]  # (30 + 30) jobs over 30 s
    assert chart["dead_per_s"] == [0.0]  # a total that shrank counts as 0
    assert chart["latency_s"] == [2.0]  # the oldest of any queue


@pytest.mark.parametrize(
    ("headers", "browser"),
    [
        ([(b"sec-fetch-site", b"same-origin")], True),
        ([(b"x-conveyor-client", b"dashboard")], True),
        ([(b"user-agent", b"curl/8")], False),
    ],
)
def test_a_browser_is_known_by_its_fetch_metadata(
    headers: list[tuple[bytes, bytes]], browser: bool
) -> None:
    assert from_browser(headers) is browser
