"""The Redis backend keeps its books straight: malformed elements, put-if-absent, counts,
exact fencing, ownership before start and lost-data alarms, all on a real redis-server.

Every test reads Given / When / Then; waits poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from services.backends.redis import keys
from services.backends.redis.queue import RedisQueue
from services.errors import BackendUnavailableError, QueueFullError
from services.protocol import Completion, Delivery
from services.settings import QueueSettings
from tests.redis_fixtures import MakeQueue, RedisServer, find_redis_server

pytestmark = pytest.mark.redis

BAD = {
    b"": "malformed element: empty, no 2-byte header",
    b"x": "malformed element: 1 byte, shorter than its 2-byte header",
    b"\x00\x00short-hex": (
        "malformed element: 11 bytes, shorter than the 18-byte header of a hex id"
    ),
    b"\x00\x10abc": "malformed element: id length 16 runs past its end (5 bytes)",
    b"\x00\x03\xff\xfe\xfd{}": "malformed element: job id is not UTF-8",
}
"""Elements no producer of ours writes, with the reason each is dead-lettered with."""


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def drain(queue: RedisQueue, want: int, max_count: int, deadline_s: float = 10.0) -> list[Delivery]:
    """Get until ``want`` deliveries came or the deadline passed; acks none."""
    got: list[Delivery] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        got += queue.get(["q"], max_count=max_count, timeout_s=0.1)
    return got


def reasons(queue: RedisQueue) -> list[str]:
    return sorted(letter.reason for letter in queue.dead_letters("q", limit=1000))


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- 1. malformed elements -------------------------------------------------------------------


@pytest.mark.parametrize("max_count", [1, 3, 50])
def test_malformed_elements_are_dead_lettered_alone(
    make_queue: MakeQueue, admin: redis.Redis, max_count: int
) -> None:
    # Given every kind of malformed element interleaved with 20 good jobs, pushed raw
    good = [f"good{i}" for i in range(20)]
    raw: list[bytes] = []
    bad = list(BAD)
    for i, job_id in enumerate(good):
        raw.append(keys.pack_element(job_id, b"{}"))
        if i % 4 == 0:
            raw.append(bad[i // 4])
    admin.rpush(keys.of("q").waiting, *raw)
    admin.rpush(keys.of("q").bell, "1")
    queue = make_queue()
    # When a consumer drains the queue in batches of max_count
    got = drain(queue, 20, max_count)
    # Then every good job is delivered once, every bad one dead-lettered once with its reason
    assert sorted(d.job_id for d in got) == sorted(good)
    assert reasons(queue) == sorted(BAD.values())
    bodies = sorted(keys.unpack_element(e).body for e in BAD)
    assert sorted(d.body for d in queue.dead_letters("q")) == bodies
    counts = queue.counts("q")
    assert (counts.waiting, counts.in_flight, counts.dead) == (0, 20, 5)
    assert queue.ack([Completion(d) for d in got]) == 0
    assert queue.counts("q").done == 20


def test_malformed_delayed_member_and_in_flight_records(
    make_queue: MakeQueue, admin: redis.Redis
) -> None:
    # Given a delayed member without a separator, and a consumer holding two good jobs plus
    # in-flight records that were written raw: an unparseable one and two malformed elements
    admin.zadd(keys.of("q").delayed, {b"no-separator": 0})
    queue, child = make_queue(), make_queue("child")
    queue.put_many("q", [("a", b"1"), ("b", b"2"), ("c", b"3")])
    held = child.get(["q"], max_count=3, timeout_s=1)
    assert sorted(d.job_id for d in held) == ["a", "b", "c"]
    admin.hset(
        keys.inflight_key("q", "child"),
        mapping={"900": b"garbage", "901": b"x", "902": b"\x00\x05ab"},
    )
    # When one good and one malformed delivery are nacked, and then the child is released
    fake = Delivery(job_id="", queue="q", body=b"", receipt=keys.make_receipt(901, "child"))
    child.hand_back([held[0], fake])
    handed = queue.reclaim("child", "worker died: signal 9")
    # Then good jobs went back, each malformed one was dead-lettered alone with its reason
    assert handed == 2
    again = drain(queue, 3, 10)
    assert sorted(d.job_id for d in again) == ["a", "b", "c"]
    assert reasons(queue) == sorted(
        [
            "malformed element: 1 byte, shorter than its 2-byte header",
            "malformed element: id length 111 runs past its end (12 bytes)",
            "malformed element: id length 97 runs past its end (7 bytes)",
            "malformed element: id length 5 runs past its end (4 bytes)",
        ]
    )
    assert queue.counts("q").in_flight == 3  # the three redelivered, nothing else


def test_requeue_dead_leaves_malformed_letters_and_listing_never_raises(
    make_queue: MakeQueue, admin: redis.Redis
) -> None:
    # Given a good dead letter, one with a malformed element, and an unreadable member
    queue = make_queue()
    queue.put("q", "fine", b"1")
    [delivery] = queue.get(["q"], timeout_s=1)
    assert queue.dead_letter(delivery, "boom")
    admin.zadd(keys.of("q").dead, {b"000000000000099\n3\nbad" + b"x": 1, b"unreadable": 2})
    # When they are listed and all requeued
    listed = {(d.job_id, d.reason) for d in queue.dead_letters("q")}
    requeued = queue.revive("q")
    # Then listing showed all three, and only the good one went back
    assert listed == {("fine", "boom"), ("", "bad"), ("", "unreadable dead letter")}
    assert requeued == 1
    assert [d.job_id for d in queue.get(["q"], timeout_s=1)] == ["fine"]
    assert len(queue.dead_letters("q")) == 2


@pytest.mark.parametrize("element", [*BAD, b"\x00", b"\x01\xff" + b"z" * 10])
def test_unpack_element_never_raises(element: bytes) -> None:
    unpacked = keys.unpack_element(element)
    assert isinstance(unpacked.job_id, str)
    assert isinstance(unpacked.body, bytes)


# -- 2. put-if-absent ------------------------------------------------------------------------


def test_put_if_absent_in_every_state(make_queue: MakeQueue) -> None:
    # Given one job queued, one delayed, one running and one done
    queue = make_queue()
    assert queue.put_many("q", [("run", b"r"), ("done", b"d")]) == [True, True]
    run, done = queue.get(["q"], max_count=2, timeout_s=1)
    assert queue.ack([Completion(done)]) == 0
    assert queue.put("q", "queued", b"q")
    assert queue.put("q", "later", b"l", delay_s=60)
    # When each id is put again (and a fresh one twice in one batch)
    again = [queue.put("q", job_id, b"again") for job_id in ("queued", "later", "run", "done")]
    batch = queue.put_many("q", [("new", b"1"), ("new", b"2")])
    # Then nothing was stored twice, and status names each state
    assert again == [False] * 4
    assert batch == [True, False]
    assert queue.depth("q") == 2
    states = {i: queue.status(i) for i in ("queued", "later", "run", "done")}
    assert {i: s.status if s else None for i, s in states.items()} == {
        "queued": "queued", "later": "scheduled", "run": "running", "done": "done",
    }  # fmt: skip
    assert [d.body for d in queue.get(["q"], max_count=5, timeout_s=1)] == [b"q", b"1"]
    assert run.job_id == "run"


def test_markers_follow_the_job_and_leave_no_key(make_queue: MakeQueue, admin: redis.Redis) -> None:
    # Given a job retried with a delay, and one nacked
    queue = make_queue(result_ttl_s=0)
    queue.put_many("q", [("r", b"1"), ("n", b"2")])
    first, second = queue.get(["q"], max_count=2, timeout_s=1)
    assert queue.retry(first, b"1b", delay_s=0.2, error="e")
    queue.hand_back([second])
    # Then both are present again for put-if-absent (no status records are kept here)
    assert queue.put_many("q", [("r", b"x"), ("n", b"x")]) == [False, False]
    # When both are drained and acked
    got = drain(queue, 2, 5)
    assert queue.ack([Completion(d) for d in got]) == 0
    # Then the ids can be put again, and no marker bucket is left behind
    assert not admin.keys(f"{keys.tag('q')}w:*")
    assert queue.put_many("q", [("r", b"x"), ("n", b"x")]) == [True, True]


def test_lua_and_python_agree_on_where_a_marker_is(
    make_queue: MakeQueue, admin: redis.Redis
) -> None:
    # Given a job with a hex id queued, and one with a free-form id (SHA-1 path) delayed
    queue = make_queue()
    hex_id, text_id = "0123456789abcdef0123456789abcdef", "invoice-42 \u00e9"
    assert queue.put("q", hex_id, b"h")
    assert queue.put("q", text_id, b"t", delay_s=60)
    # Then each marker is one field of a small hash, where keys.py says it is
    assert keys.marker_at("q", hex_id) == ("cv:{q}:w:012", bytes.fromhex("23456789abcdef"))
    assert keys.marker_state(admin.hget(*keys.marker_at("q", hex_id))) == "queued"
    assert keys.marker_state(admin.hget(*keys.marker_at("q", text_id))) == "scheduled"
    assert admin.type(keys.marker_at("q", text_id)[0]) == b"hash"
    # (the compact encoding: listpack, or ziplist before Redis 7.0)
    assert admin.object("encoding", keys.marker_at("q", hex_id)[0]) in {b"listpack", b"ziplist"}
    # When the queued one is fetched, its marker goes
    [got] = queue.get(["q"], max_count=5, timeout_s=1)
    assert got.job_id == hex_id
    assert admin.hget(*keys.marker_at("q", hex_id)) is None
    assert keys.marker_state(admin.hget(*keys.marker_at("q", text_id))) == "scheduled"


def test_a_marker_change_logs_a_few_bytes_not_its_bucket(tmp_path: Path) -> None:
    # Given a Redis with an AOF (what it logs is what it replicates), holding 600 waiting jobs
    # whose markers all share one bucket
    binary = find_redis_server()
    assert binary is not None, "no redis-server binary"
    server = RedisServer(binary, tmp_path)
    server.start(persistent=True, extra_args=["--appendfsync", "always"])
    queue = RedisQueue(server.url, QueueSettings())
    try:
        # (scripts loaded first: Redis before 7.0 logs each first SCRIPT LOAD, a few KB, once)
        assert queue.put("warm-up", "w", b"x") and queue.get(["warm-up"], timeout_s=1)
        ids = [f"abc{secrets.token_hex(16)[3:]}" for _ in range(601)]
        assert {keys.marker_at("q", i)[0] for i in ids} == {"cv:{q}:w:abc"}
        assert all(queue.put_many("q", [(i, b"x") for i in ids[:600]]))
        before = aof_size(server)
        # When one more job of that bucket is put, then one is fetched
        assert queue.put("q", ids[600], b"x")
        after_put = aof_size(server)
        assert len(queue.get(["q"], max_count=1, timeout_s=1)) == 1
        after_get = aof_size(server)
        # Then each logs its own commands only: far less than the ~6 KB of markers in the bucket
        assert after_put - before < 1000
        assert after_get - after_put < 1000
    finally:
        queue.close()
        server.kill()


def aof_size(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    try:
        return int(client.info("persistence")["aof_current_size"])
    finally:
        client.close()


def test_a_put_whose_reply_is_lost_is_retried_and_stored_once(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection that loses the reply of the first PUT it sends
    queue = make_queue()
    kept = queue._scripts._kept  # a lone PUT goes out on a kept connection (``calls``)
    assert kept is not None
    real = kept.call
    lost: list[Any] = []

    def call(*args: Any) -> Any:
        reply = real(*args)
        if not lost:
            lost.append(reply)
            raise redis.ConnectionError("reply lost")
        return reply

    monkeypatch.setattr(kept, "call", call)
    # When a job is put
    flag = queue.put("q", "once", b"x")
    # Then the put was retried with the same id and the job is stored exactly once
    assert lost == [b"1"]
    assert flag is False  # the retry found it stored by the lost attempt
    assert queue.depth("q") == 1


def test_a_put_of_new_ids_still_refuses_a_waiting_id_and_a_repeat(make_queue: MakeQueue) -> None:
    # Given one hex id and one text id waiting, put without new_ids
    queue = make_queue()
    hex_id, text_id = secrets.token_hex(16), "waiting-job"
    assert queue.put_many("q", [(hex_id, b"a"), (text_id, b"a")]) == [True, True]
    # When they are put again as new ids, alone and in a batch that also repeats a fresh id
    fresh = secrets.token_hex(16)
    single = queue.put("q", hex_id, b"b", new_ids=True)
    batch = queue.put_many("q", [(text_id, b"b"), (fresh, b"b"), (fresh, b"c")], new_ids=True)
    # Then the waiting ids and the repeat are refused; only the fresh id is stored, once
    assert single is False
    assert batch == [False, True, False]
    got = drain(queue, 3, 10)
    assert sorted((d.job_id, d.body) for d in got) == sorted(
        [(hex_id, b"a"), (text_id, b"a"), (fresh, b"b")]
    )


def test_a_put_of_new_ids_into_a_nearly_full_queue_counts_only_what_it_stores(
    make_queue: MakeQueue,
) -> None:
    # Given a queue bounded at 2 that holds one job
    queue = make_queue(max_depth=2, put_timeout_s=0.5)
    waiting = secrets.token_hex(16)
    assert queue.put("q", waiting, b"a")
    # When that id and a fresh one are put as new ids (2 items, room for 1)
    fresh = secrets.token_hex(16)
    flags = queue.put_many("q", [(waiting, b"b"), (fresh, b"b")], new_ids=True)
    # Then the present id is refused and the fresh one fits: the queue is not full for it
    assert flags == [False, True]
    assert queue.depth("q") == 2


def test_a_put_of_new_ids_into_a_full_queue_stores_nothing(make_queue: MakeQueue) -> None:
    # Given a queue bounded at 1 that is full
    queue = make_queue(max_depth=1, put_timeout_s=0.2)
    assert queue.put("q", secrets.token_hex(16), b"a")
    fresh = secrets.token_hex(16)
    # When a new id is put, Then the queue is full and nothing of it is stored (no marker)
    with pytest.raises(QueueFullError):
        queue.put("q", fresh, b"b", new_ids=True)
    assert len(drain(queue, 1, 1)) == 1
    assert queue.put("q", fresh, b"b", new_ids=True) is True


def test_a_retried_put_of_new_ids_checks_everything_again(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a producer whose first PUT is stored, then fetched and acked by a worker, and
    # whose reply is lost
    queue, worker = make_queue(), make_queue("worker")
    job_id = secrets.token_hex(16)
    kept = queue._scripts._kept  # a lone PUT goes out on a kept connection (``calls``)
    assert kept is not None
    real = kept.call
    lost: list[Any] = []

    def call(*args: Any) -> Any:
        reply = real(*args)
        if not lost:
            lost.append(reply)
            [delivery] = drain(worker, 1, 1)
            assert worker.ack([Completion(delivery)]) == 0
            raise redis.ConnectionError("reply lost")
        return reply

    monkeypatch.setattr(kept, "call", call)
    # When the job is put as a new id
    flag = queue.put("q", job_id, b"x", new_ids=True)
    # Then the retry found it finished (full checks), and it was not stored a second time
    assert lost == [b"1"]
    assert flag is False
    assert queue.depth("q") == 0
    assert worker.get(["q"], timeout_s=0.2) == []
    status = queue.status(job_id)
    assert status is not None and status.status == "done"


@pytest.mark.parametrize("put_before", [False, True], ids=["first put", "kept connection"])
def test_an_unconfirmed_put_says_so(
    redis_server: RedisServer, redis_url: str, put_before: bool
) -> None:
    # Given a Redis that is down (after a put, when the lone put's kept connection is open)
    queue = RedisQueue(redis_url, QueueSettings(op_timeout_s=0.2, put_timeout_s=0.4))
    if put_before:
        assert queue.put("q", "first", b"x")
    redis_server.kill()
    try:
        # When a put is attempted, Then it gives up after its timeout saying what it means
        with pytest.raises(BackendUnavailableError, match="may or may not be stored"):
            queue.put("q", "j", b"x")
    finally:
        queue.close()
        redis_server.start()


# -- 3. counts -------------------------------------------------------------------------------


def test_counts_survive_a_killed_consumer(make_queue: MakeQueue) -> None:
    # Given 30 jobs, 10 held by a consumer that dies, 2 delayed
    producer, child = make_queue(max_redeliveries=1), make_queue("child")
    producer.put_many("q", [(f"j{i}", b"x") for i in range(30)])
    producer.put_many("q", [("d1", b"x"), ("d2", b"x")], delay_s=0.2)
    held = child.get(["q"], max_count=10, timeout_s=1)
    assert producer.counts("q").in_flight == 10
    assert (producer.counts("q").waiting, producer.counts("q").delayed) == (20, 2)
    # When it is released (max_redeliveries=1: its jobs are quarantined), the rest acked
    assert producer.reclaim("child", "worker died: signal 9", suspects=[held[0].job_id]) == 10
    rest = drain(producer, 31, 50)
    producer.ack([Completion(d) for d in rest])
    # Then nothing is in flight, and done + dead accounts for every job put
    counts = producer.counts("q")
    assert (counts.in_flight, counts.waiting, counts.delayed) == (0, 0, 0)
    assert (counts.done, counts.dead) == (31, 1)


# -- 4. exact fencing ------------------------------------------------------------------------


def test_a_repeated_settlement_is_not_fenced_but_a_handed_back_one_is(
    make_queue: MakeQueue,
) -> None:
    # Given three deliveries settled once
    queue, other = make_queue("A"), make_queue("B")
    queue.put_many("q", [("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")])
    a, b, c, d = queue.get(["q"], max_count=4, timeout_s=1)
    assert queue.ack([Completion(a)]) == 0
    assert queue.retry(b, b"2b", delay_s=60, error="e")
    assert queue.dead_letter(c, "x")
    # When each settlement is sent again (its first reply lost), and d is handed back first
    repeats = (queue.ack([Completion(a)]), queue.retry(b, b"2c", delay_s=0, error="e"),
               queue.dead_letter(c, "x"))  # fmt: skip
    assert other.reclaim("A", "worker died") == 1
    late = queue.ack([Completion(d)])
    # Then the repeats are accepted and not counted; only the handed-back one is fenced
    assert repeats == (0, True, True)
    assert late == 1
    assert queue.stats().get("fenced") == 1
    assert queue.depth("q") == 1  # d only: the repeated retry did not add b again


# -- 5. ownership before start, alarms ----------------------------------------------------------


def expire_lease(admin: redis.Redis, consumer_id: str) -> None:
    """Make ``consumer_id``'s lease look expired (as if it had been paused past it)."""
    admin.zadd(keys.of("q").leases, {consumer_id: 0})


def test_a_consumer_whose_jobs_were_recovered_confirms_none(
    make_queue: MakeQueue, admin: redis.Redis
) -> None:
    # Given A holds two jobs, one started and one prefetched, and its hold is fresh
    a, b = make_queue("A", lease_s=1.5), make_queue("B", lease_s=1.5)
    a.put_many("q", [("ran", b"1"), ("waiting", b"2")])
    ran, waiting = a.get(["q"], max_count=2, timeout_s=1)
    assert a.held_until() > time.monotonic()
    a.started([ran])
    a._heartbeat.beat_once()  # publishes "waiting" as prefetched
    a._heartbeat.stop()
    # When A's lease expires and B's recovery hands its jobs back
    expire_lease(admin, "A")
    assert b._recover() == 2
    # Then A's next renewal sees it, A's hold is in the past, and confirm keeps nothing
    a._renew()
    assert a.held_until() == -math.inf
    assert any("lost its hold" in alarm for alarm in a.alarms())
    assert a.confirm([waiting]) == []
    # And only the job that was running counts as a crash suspect
    again = b.get(["q"], max_count=2, timeout_s=1)
    assert sorted((d.job_id, d.redeliveries) for d in again) == [("ran", 1), ("waiting", 0)]


def test_confirm_renews_and_keeps_what_is_still_held(make_queue: MakeQueue) -> None:
    queue = make_queue("A", lease_s=5)
    queue.put_many("q", [("x", b"1"), ("y", b"2")])
    held = queue.get(["q"], max_count=2, timeout_s=1)
    before = queue.held_until()
    assert queue.confirm(held) == held
    assert queue.held_until() >= before


def test_restart_empty_raises_a_sticky_alarm_no_fresh_process_clears(
    redis_server: RedisServer, redis_url: str, make_queue: MakeQueue
) -> None:
    # Given a consumer holding a job (heartbeat every 0.3 s)
    consumer = make_queue("C", lease_s=0.9)
    consumer.put("q", "j", b"x")
    assert consumer.get(["q"], timeout_s=1)
    # When Redis restarts empty and a fresh producer puts a job first
    redis_server.kill()
    redis_server.start()
    fresh = make_queue()
    fresh.put("q", "k", b"y")
    # Then the consumer raises an alarm within about a heartbeat, and it stays
    wait_until("the alarm", lambda: bool(consumer.alarms()), timeout_s=5)
    assert any("restarted EMPTY" in text for text in consumer.alarms())
    fresh.put("q", "l", b"z")
    assert any("restarted EMPTY" in text for text in consumer.check_server())
    assert fresh.alarms() == []


def test_setup_warnings_only_when_checked(
    make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a Redis without persistence (the test server)
    with caplog.at_level(logging.WARNING, logger="conveyor.redis"):
        # When a connection puts and gets
        queue = make_queue()
        queue.put("q", "j", b"x")
        queue.get(["q"], timeout_s=1)
        # Then nothing is logged until check_server is called
        assert not caplog.records
        assert any("no persistence" in w for w in queue.check_server())
    assert any("no persistence" in r.message for r in caplog.records)


@pytest.mark.parametrize("settle", ["ack", "retry", "dead_letter"])
def test_a_token_issued_again_after_a_failover_never_settles_another_job(
    make_queue: MakeQueue, admin: redis.Redis, settle: str
) -> None:
    # Given a delivery of job X whose FETCH a failover lost: the promoted replica issued the
    # same token again, to job A (simulated: the in-flight record of X's token now holds A)
    queue = make_queue("c1")
    assert queue.put("q", "job-x", b"{}")
    [x] = queue.get(["q"], timeout_s=5)
    _, token = keys.parse_receipt(x.receipt)
    a_element = keys.pack_element("job-a", b"{}")
    admin.hset(keys.inflight_key("q", "c1"), token, a_element)
    # When X's delivery is settled
    if settle == "ack":
        queue.ack([Completion(x, result=None)])
    elif settle == "retry":
        queue.retry(x, b"{}", delay_s=0.0, error="boom")
    else:
        queue.dead_letter(x, "boom")
    # Then A's record is untouched: A is not settled by X's receipt
    assert admin.hget(keys.inflight_key("q", "c1"), token) == a_element
    assert queue.status("job-a") is None or queue.status("job-a").state != "done"  # type: ignore[union-attr]
    assert admin.exists(keys.done_key("q", "job-a")) == 0
    assert queue.dead_letters("q") == []


def test_an_ack_a_failover_lost_is_handed_back_once_the_heartbeat_returns(
    make_queue: MakeQueue, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job acked, whose ack a failover then lost (simulated: its in-flight record is
    # back, as on a promoted replica that never saw the ACK)
    queue = make_queue("c1", lease_s=0.6, op_timeout_s=0.2)
    assert queue.put("q", "job-x", b"{}")
    [x] = queue.get(["q"], timeout_s=5)
    _, token = keys.parse_receipt(x.receipt)
    record = admin.hget(keys.inflight_key("q", "c1"), token)
    queue.ack([Completion(x, result=None)])
    admin.hset(keys.inflight_key("q", "c1"), token, record)
    # When Redis is away for a while: only the heartbeat notices (it fails, then comes back)
    caplog.set_level(logging.INFO, logger="conveyor.redis")
    admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # type: ignore[no-untyped-call]
    wait_until("the heartbeat failed and came back", lambda: "heartbeat restored" in caplog.text)
    # Then the next fetch hands the job back and delivers it again, instead of leaving it
    # "running" in Redis for as long as this consumer lives
    assert [d.job_id for d in queue.get(["q"], timeout_s=5)] == ["job-x"]
