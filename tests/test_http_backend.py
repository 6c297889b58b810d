"""The asyncio Redis backend that ``conveyor serve`` uses, on a real redis-server: it keeps the
blocking backend's keys and contract (put-if-absent, counts, status, cancel), merges the puts
of concurrent callers into few round trips, and maps a lost server to
``BackendUnavailableError``. Also what cancelling leaves in Redis: a tombstone that FETCH drops.
"""

from __future__ import annotations

import asyncio

import pytest
import redis

from services.backends import open_async_queue
from services.backends.redis import keys
from services.errors import BackendUnavailableError, ConfigError, QueueFullError
from services.protocol import CANCELLED, AsyncBackend, Completion, JobStatus, QueueCounts
from services.settings import QueueSettings
from tests.redis_fixtures import MakeQueue, free_port
from tests.test_http_fixtures import anyio_backend

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
__all__ = ["anyio_backend"]  # the fixture, imported for pytest


def open_aio(url: str, **settings: object) -> AsyncBackend:
    return open_async_queue(url, QueueSettings(**settings))  # type: ignore[arg-type]


def evalsha_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    client.close()
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


async def test_concurrent_puts_share_a_round_trip_and_stay_put_if_absent(
    redis_url: str, make_queue: MakeQueue
) -> None:
    backend = open_aio(redis_url)
    try:
        await backend.put_many("q", [("warm-up", b"x")])  # loads the PUT script
        before = evalsha_calls(redis_url)
        # When 200 callers put at once, one of them an id another caller also puts
        puts = [backend.put_many("q", [(f"id-{n}", b"x")]) for n in range(200)]
        puts.append(backend.put_many("q", [("id-7", b"again")]))
        flags = await asyncio.gather(*puts)
        # Then each gets its own flags, the repeated id stored once, in one PUT call
        assert flags[:200] == [[True]] * 200
        assert flags[200] == [False]
        assert evalsha_calls(redis_url) - before == 1
    finally:
        await backend.aclose()
    assert make_queue().counts("q") == QueueCounts(waiting=201)


async def test_puts_merged_across_several_calls_get_their_own_flags(
    redis_url: str, make_queue: MakeQueue
) -> None:
    backend = open_aio(redis_url)
    try:
        # Given three callers of 200 jobs each at once (more than one PUT call holds), the
        # last one repeating two ids of the first
        first = [(f"a{n}", b"x") for n in range(200)]
        second = [(f"b{n}", b"x") for n in range(200)]
        third = [(f"c{n}", b"x") for n in range(198)] + [("a0", b"y"), ("a199", b"y")]
        flags = await asyncio.gather(
            *(backend.put_many("q", items) for items in (first, second, third))
        )
        # Then each caller gets one flag per job, in order, False only for the repeats
        assert flags[0] == [True] * 200
        assert flags[1] == [True] * 200
        assert flags[2] == [True] * 198 + [False, False]
    finally:
        await backend.aclose()
    assert make_queue().counts("q") == QueueCounts(waiting=598)


async def test_what_the_asyncio_backend_puts_the_blocking_one_reads(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    backend = open_aio(redis_url)
    try:
        assert await backend.put_many("a", [("j1", b"1"), ("j2", b"2")]) == [True, True]
        assert await backend.put_many("b", [("j3", b"3")], delay_s=60) == [True]
        assert await backend.queues() == ["a", "b"]
        counts = await backend.counts_many(["a", "b", "c"])
        assert counts == [QueueCounts(waiting=2), QueueCounts(delayed=1), QueueCounts()]
        [delivery] = queue.get(["a"], timeout_s=1)
        queue.ack([Completion(delivery, b"[1]")])
        assert await backend.status("j1") == JobStatus("j1", "done", 1, None, b"[1]")
        assert await backend.status("j2") == queue.status("j2") == JobStatus("j2", "queued")
        assert await backend.status("j3") == JobStatus("j3", "scheduled")
        assert await backend.status("never") is None
    finally:
        await backend.aclose()


async def test_cancel_tombstones_and_fetch_drops_it(redis_url: str, make_queue: MakeQueue) -> None:
    queue = make_queue(result_ttl_s=0)  # no status kept: the tombstone alone guards the id
    admin = redis.Redis.from_url(redis_url)
    backend = open_aio(redis_url, result_ttl_s=0)
    try:
        await backend.put_many("q", [("a", b"1"), ("b", b"2")])
        # The queue is registered, and the waiting marker is under its tag
        assert admin.smembers(keys.REGISTRY_KEY) == {b"q"}
        assert keys.marker_state(admin.hget(*keys.marker_at("q", "a"))) == "queued"
        # When a is cancelled
        assert (await backend.cancel("a")).cancelled
        # Then it is still in the list, tombstoned, and not counted as waiting
        assert admin.llen(keys.of("q").waiting) == 2
        assert admin.hexists(keys.of("q").cancelled, keys.id_key("a"))
        assert await backend.counts_many(["q"]) == [QueueCounts(waiting=1, dead=1)]
        assert queue.depth("q") == 1
        # And its id cannot be put again while the tombstone is there
        assert await backend.put_many("q", [("a", b"new")]) == [False]
        # When a consumer fetches: only b comes, the tombstone goes, the counts stay right
        assert [d.job_id for d in queue.get(["q"], max_count=5, timeout_s=0.5)] == ["b"]
        assert not admin.exists(keys.of("q").cancelled)
        assert queue.counts("q") == QueueCounts(in_flight=1, dead=1)
        assert admin.hget(keys.of("q").counts, "xq") == b"0"
    finally:
        await backend.aclose()
        admin.close()


async def test_a_cancelled_delayed_job_is_dropped_when_due(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    backend = open_aio(redis_url)
    try:
        await backend.put_many("q", [("later", b"1")], delay_s=0.2)
        outcome = await backend.cancel("later")
        assert outcome.cancelled
        assert await backend.status("later") == JobStatus("later", "dead", 0, CANCELLED)
        assert queue.get(["q"], timeout_s=0.6) == []
        assert queue.counts("q") == QueueCounts(dead=1)
        # A second cancel says why not, with the status
        again = await backend.cancel("later")
        assert not again.cancelled
        assert again.status == JobStatus("later", "dead", 0, CANCELLED)
    finally:
        await backend.aclose()


async def test_dead_letters_through_the_asyncio_backend(
    redis_url: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()
    backend = open_aio(redis_url)
    try:
        await backend.put_many("q", [(f"d{n}", b"x") for n in range(3)])
        for delivery in queue.get(["q"], max_count=3, timeout_s=1):
            queue.dead_letter(delivery, "boom")
        assert [x.job_id for x in await backend.dead_letters("q", limit=2)] == ["d2", "d1"]
        assert await backend.revive("q", ["d0"]) == 1
        assert await backend.delete_dead("q", ["d1", "nope"]) == 1
        assert await backend.delete_dead("q") == 1
        assert await backend.dead_letters("q") == []
        assert await backend.revive("q", []) == 0
    finally:
        await backend.aclose()


async def test_a_bounded_queue_keeps_each_callers_put_whole(redis_url: str) -> None:
    backend = open_aio(redis_url, max_depth=3, put_timeout_s=0.2)
    try:
        # Two callers at once, 2 jobs each, on a queue with room for 3: one fits, one waits
        first, second = await asyncio.gather(
            backend.put_many("q", [("a1", b"x"), ("a2", b"x")]),
            backend.put_many("q", [("b1", b"x"), ("b2", b"x")]),
            return_exceptions=True,
        )
        assert first == [True, True]
        assert isinstance(second, QueueFullError)
        with pytest.raises(QueueFullError, match="can never fit"):
            await backend.put_many("q", [(f"c{n}", b"x") for n in range(4)])
        assert await backend.counts_many(["q"]) == [QueueCounts(waiting=2)]
    finally:
        await backend.aclose()


async def test_an_unreachable_server_is_backend_unavailable() -> None:
    backend = open_aio(f"redis://127.0.0.1:{free_port()}/0", op_timeout_s=0.5, put_timeout_s=0.1)
    try:
        with pytest.raises(BackendUnavailableError, match="not confirmed"):
            await backend.put_many("q", [("a", b"x")])
        with pytest.raises(BackendUnavailableError):
            await backend.check_server()
        with pytest.raises(BackendUnavailableError):
            await backend.status("a")
    finally:
        await backend.aclose()


def test_memory_has_no_asyncio_backend() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        open_async_queue("memory://")
