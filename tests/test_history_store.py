"""The history role (``services.protocol.history``): bucketing, the idempotent merge, the cap,
on the memory store and on a real ``redis-server`` (``RedisHistory``), with explicit times
(the store takes the sample's time from its caller: the clock is the test's)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.backends.memory.history import MemoryHistory
from services.backends.redis.history import history_key
from services.protocol.history import (
    MINUTE,
    QUARTER,
    RESOLUTIONS,
    HistoryStore,
    KeepsHistory,
    Snapshot,
    merge,
    pack,
    unpack,
)
from tests.redis_fixtures import MakeQueue

T0 = 1_800_000_000.0  # a whole quarter hour (divisible by 900)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> HistoryStore:
    if request.param == "memory":
        return MemoryHistory()
    make_queue: MakeQueue = request.getfixturevalue("make_queue")
    backend = make_queue()
    assert isinstance(backend, KeepsHistory)
    return backend.history_store()


def snap(done: int, **gauges: int) -> Snapshot:
    return Snapshot(done=done, **gauges)


def test_buckets_start_at_the_width() -> None:
    assert MINUTE.bucket(T0 + 59.9) == T0
    assert MINUTE.bucket(T0 + 60) == T0 + 60
    assert QUARTER.bucket(T0 + 899) == T0


def test_merge_keeps_smallest_totals_and_largest_gauges_whatever_the_order() -> None:
    a = Snapshot(done=10, dead=2, waiting=5, oldest_waiting_ms=100)
    b = Snapshot(done=14, dead=1, waiting=9, oldest_waiting_ms=50)
    assert merge(a, b) == merge(b, a) == Snapshot(10, 1, 9, 0, 0, 100)
    assert merge(a, a) == a


def test_pack_round_trips() -> None:
    one = Snapshot(1, 2, 3, 4, 5, 6)
    assert unpack(pack(one)) == one
    assert unpack(b"7,8") == Snapshot(done=7, dead=8)


def test_samples_of_one_minute_merge_into_one_bucket(store: HistoryStore) -> None:
    # Given three looks inside one minute, one of them repeated (a second sampler)
    store.record(T0 + 5, {"q": snap(100, waiting=3)})
    store.record(T0 + 20, {"q": snap(130, waiting=8)})
    store.record(T0 + 20, {"q": snap(130, waiting=8)})
    store.record(T0 + 65, {"q": snap(160, waiting=1)})
    # Then the minute holds its first total and its largest backlog; the next its own
    got = store.history(["q", "never"], MINUTE)
    assert got["never"] == []
    assert got["q"] == [(int(T0), snap(100, waiting=8)), (int(T0) + 60, snap(160, waiting=1))]
    assert store.history(["q"], QUARTER)["q"] == [(int(T0), snap(100, waiting=8))]


def test_each_resolution_keeps_its_newest_buckets_only(store: HistoryStore) -> None:
    # When more minutes are sampled than a resolution keeps
    for minute in range(MINUTE.keep + 5):
        store.record(T0 + 60 * minute, {"q": snap(minute)})
    # Then the oldest are gone, the newest kept, in order
    kept = store.history(["q"], MINUTE)["q"]
    assert len(kept) == MINUTE.keep
    assert kept[0] == (int(T0) + 300, snap(5))
    assert kept[-1][1] == snap(MINUTE.keep + 4)


@pytest.mark.redis
def test_redis_history_stays_listpack_encoded(make_queue: MakeQueue) -> None:
    # Given a day of samples, one a minute, on a real redis-server
    backend = make_queue()
    store = backend.history_store()
    for minute in range(0, 26 * 60, 1):
        store.record(T0 + 60 * minute, {"q": snap(minute, waiting=minute % 7)})
    client = backend._client
    # Then each resolution's hash is capped and in Redis's compact encoding
    for resolution in RESOLUTIONS:
        key = history_key("q", resolution)
        assert client.hlen(key) == resolution.keep
        assert client.object("encoding", key) in (b"listpack", b"ziplist")
        assert client.ttl(key) > 0


def test_store_gives_the_same_object(make_queue: Callable[..., object]) -> None:
    backend = make_queue()
    assert isinstance(backend, KeepsHistory)
    assert backend.history_store() is backend.history_store()
