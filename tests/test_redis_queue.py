"""The Redis backend against a real redis-server: delivery, delays, retries, leases, fencing.

Every test reads Given / When / Then; waits poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from services.backends.redis import keys
from services.backends.redis.lease import Tokens
from services.backends.redis.queue import RedisQueue
from services.protocol import Completion, Delivery
from tests.redis_fixtures import MakeQueue

pytestmark = pytest.mark.redis


def get_within(
    queue: RedisQueue, queues: list[str], deadline_s: float, max_count: int = 1
) -> list[Delivery]:
    """Poll ``get`` until something comes or ``deadline_s`` passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        got = queue.get(queues, max_count=max_count, timeout_s=0.2)
        if got:
            return got
    return []


def test_put_get_ack_round_trip(make_queue: MakeQueue) -> None:
    # Given a job in a queue
    queue = make_queue()
    queue.put("q", "0123456789abcdef0123456789abcdef", b'{"job": 1}')
    # When a consumer takes it and acks it
    [delivery] = queue.get(["q"], timeout_s=1)
    rejected = queue.ack([Completion(delivery, b"42")])
    # Then it came back intact, the ack was accepted and nothing waits any more
    assert (delivery.job_id, delivery.queue, delivery.body) == (
        "0123456789abcdef0123456789abcdef",
        "q",
        b'{"job": 1}',
    )
    assert delivery.redeliveries == 0
    assert rejected == 0
    assert queue.depth("q") == 0
    assert queue.get(["q"], timeout_s=0) == []


def test_get_batches_in_queue_order(make_queue: MakeQueue) -> None:
    # Given jobs in a low and a high priority queue
    queue = make_queue()
    queue.put_many("low", [(f"l{i}", b"L") for i in range(3)])
    queue.put_many("high", [(f"h{i}", b"H") for i in range(2)])
    # When one get asks for four, high first
    got = queue.get(["high", "low"], max_count=4, timeout_s=0)
    # Then the high queue is emptied first, FIFO within each queue
    assert [d.job_id for d in got] == ["h0", "h1", "l0", "l1"]
    assert queue.depth("low") == 1


def test_get_blocks_until_a_put_wakes_it(make_queue: MakeQueue) -> None:
    # Given a consumer blocked in get on an empty queue
    import threading

    consumer, producer = make_queue(), make_queue()
    result: list[Delivery] = []
    waiter = threading.Thread(target=lambda: result.extend(consumer.get(["q"], timeout_s=10)))
    waiter.start()
    # When a job is put
    started = time.monotonic()
    producer.put("q", "j", b"x")
    waiter.join(10)
    # Then the consumer returns with it long before its timeout
    assert [d.job_id for d in result] == ["j"]
    assert time.monotonic() - started < 2.0


def test_delayed_job_runs_on_time_and_once(make_queue: MakeQueue) -> None:
    # Given a job delayed by 0.6 s and two consumers
    a, b = make_queue(), make_queue()
    a.put("q", "late", b"x", delay_s=0.6)
    put_at = time.monotonic()
    # When both poll the queue for up to three seconds
    seen: list[tuple[float, Delivery]] = []
    while time.monotonic() - put_at < 3.0:
        for consumer in (a, b):
            for delivery in consumer.get(["q"], max_count=5, timeout_s=0.1):
                seen.append((time.monotonic() - put_at, delivery))
                consumer.ack([Completion(delivery)])
    # Then it ran exactly once, not before its time and within about a second of it
    assert len(seen) == 1
    assert 0.55 <= seen[0][0] < 1.8


def test_retry_with_delay_replaces_the_job(make_queue: MakeQueue) -> None:
    # Given a delivered job
    queue = make_queue()
    queue.put("q", "r", b"attempt0")
    [first] = queue.get(["q"], timeout_s=1)
    # When it is retried with a new body after 0.3 s
    assert queue.retry(first, b"attempt1", delay_s=0.3, error="ValueError: boom")
    # Then it is invisible at once, marked failed, and comes back with the new body
    assert queue.get(["q"], timeout_s=0) == []
    status = queue.status("r")
    assert status is not None
    assert (status.status, status.attempts, status.error) == ("failed", 1, "ValueError: boom")
    [second] = get_within(queue, ["q"], 3.0)
    assert second.body == b"attempt1"
    assert second.receipt != first.receipt
    assert queue.ack([Completion(second)]) == 0
    done = queue.status("r")
    assert done is not None
    assert (done.status, done.attempts) == ("done", 2)


def test_nack_puts_back_at_the_front_uncounted(make_queue: MakeQueue) -> None:
    # Given two queued jobs, the first delivered
    queue = make_queue()
    queue.put_many("q", [("first", b"1"), ("second", b"2")])
    [delivery] = queue.get(["q"], timeout_s=1)
    # When it is nacked
    queue.hand_back([delivery])
    # Then it is next again, not counted as a crash
    [again] = queue.get(["q"], timeout_s=1)
    assert (again.job_id, again.redeliveries) == ("first", 0)


def test_release_hands_back_then_quarantines(make_queue: MakeQueue) -> None:
    # Given a job whose consumers die, with max_redeliveries=3
    supervisor = make_queue(max_redeliveries=3)
    supervisor.put("q", "poison", b"p")
    seen = []
    for n in range(3):
        child = make_queue(consumer_id=f"child{n}", max_redeliveries=3)
        [delivery] = child.get(["q"], timeout_s=1)
        seen.append(delivery.redeliveries)
        # When the supervisor reaps the dead child
        assert supervisor.reclaim(f"child{n}", "worker died: signal 9") == 1
    # Then it came back twice with redeliveries + 1, and the third death quarantined it
    assert seen == [0, 1, 2]
    assert supervisor.depth("q") == 0
    [letter] = supervisor.dead_letters("q")
    assert (letter.job_id, letter.body) == ("poison", b"p")
    assert letter.reason == "worker died: signal 9, 3 times"
    status = supervisor.status("poison")
    assert status is not None
    assert status.status == "dead"


def test_lease_expiry_hands_jobs_to_another_consumer(make_queue: MakeQueue) -> None:
    # Given consumer A holding a job with a 0.5 s lease, and A's heartbeat stopped (A hangs)
    a, b = make_queue("A", lease_s=0.5), make_queue("B", lease_s=0.5)
    a.put("q", "j", b"x")
    [held] = a.get(["q"], timeout_s=1)
    a._heartbeat.stop()
    # When B keeps asking
    started = time.monotonic()
    got = get_within(b, ["q"], 5.0)
    # Then B gets it within a few seconds, marked as redelivered
    assert [(d.job_id, d.redeliveries) for d in got] == [("j", 1)]
    assert time.monotonic() - started < 3.0
    assert held.receipt != got[0].receipt


def test_heartbeat_keeps_a_long_job(make_queue: MakeQueue) -> None:
    # Given consumer A holding a job for four lease lengths, its heartbeat running
    a, b = make_queue("A", lease_s=0.5), make_queue("B", lease_s=0.5)
    a.put("q", "long", b"x")
    [held] = a.get(["q"], timeout_s=1)
    # When B polls the queue all that time (its heartbeat runs recovery too)
    stolen = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        stolen.extend(b.get(["q"], timeout_s=0.2))
    # Then B never got it, and A's ack is accepted
    assert stolen == []
    assert a.ack([Completion(held)]) == 0


def test_fencing_rejects_a_paused_consumer(make_queue: MakeQueue) -> None:
    # Given A's jobs were handed to B after A's lease ran out (A paused, heartbeat stopped)
    a, b = make_queue("A", lease_s=0.5), make_queue("B", lease_s=0.5)
    a.put_many("q", [("j1", b"1"), ("j2", b"2"), ("j3", b"3")])
    old = a.get(["q"], max_count=3, timeout_s=1)
    a._heartbeat.stop()
    new = get_within(b, ["q"], 5.0, max_count=3)
    assert sorted(d.job_id for d in new) == ["j1", "j2", "j3"]
    # When A wakes up and settles its stale deliveries
    rejected = a.ack([Completion(old[0], b"stale")])
    retried = a.retry(old[1], b"again", delay_s=0, error="x")
    buried = a.dead_letter(old[2], "y")
    # Then every settlement is rejected and counted; B's are accepted
    assert (rejected, retried, buried) == (1, False, False)
    assert a.stats()["fenced"] == 3
    assert a.depth("q") == 0
    assert a.dead_letters("q") == []
    assert b.ack([Completion(d) for d in new]) == 0
    status = b.status("j1")
    assert status is not None
    assert status.result is None


def test_dead_letters_bounded_listable_requeueable(make_queue: MakeQueue) -> None:
    # Given a queue that keeps at most three dead letters
    queue = make_queue(dead_letter_max=3)
    queue.put_many("q", [(f"d{i}", f"body{i}".encode()) for i in range(5)])
    for delivery in queue.get(["q"], max_count=5, timeout_s=1):
        assert queue.dead_letter(delivery, f"failed {delivery.job_id}\n" + "t" * 20_000)
    # When they are listed
    letters = queue.dead_letters("q")
    # Then the newest three remain, newest first, reasons bounded
    assert [d.job_id for d in letters] == ["d4", "d3", "d2"]
    assert letters[0].reason.startswith("failed d4")
    assert len(letters[0].reason) <= 8192
    assert letters[0].body == b"body4"
    # When two are requeued by id
    assert queue.revive("q", ["d2", "d4", "unknown"]) == 2
    # Then they run again as fresh attempts, the other stays dead
    again = queue.get(["q"], max_count=5, timeout_s=1)
    assert sorted((d.job_id, d.redeliveries) for d in again) == [("d2", 0), ("d4", 0)]
    assert [d.job_id for d in queue.dead_letters("q")] == ["d3"]
    assert queue.revive("q") == 1


def test_dead_letters_bounded_by_age(make_queue: MakeQueue) -> None:
    # Given dead letters kept for 0.2 s, and one old dead letter
    queue = make_queue(dead_letter_max_age_s=0.2)
    queue.put("q", "old", b"o")
    [old] = queue.get(["q"], timeout_s=1)
    queue.dead_letter(old, "old")
    # When newer jobs keep dying
    deadline = time.monotonic() + 5.0
    n = 0
    while time.monotonic() < deadline and "old" in {d.job_id for d in queue.dead_letters("q")}:
        queue.put("q", f"new{n}", b"n")
        [fresh] = queue.get(["q"], timeout_s=1)
        queue.dead_letter(fresh, "new")
        n += 1
    # Then the old one was trimmed by age, the newest kept
    ids = [d.job_id for d in queue.dead_letters("q")]
    assert "old" not in ids
    assert ids[0] == f"new{n - 1}"


def test_no_keys_leak_after_jobs_finish(make_queue: MakeQueue, redis_url: str) -> None:
    # Given jobs that end in every way: acked, retried then acked, dead, nacked, released
    queue = make_queue("worker")
    queue.put_many("q", [(f"k{i}", b"x") for i in range(6)])
    queue.put("q", "delayed", b"d", delay_s=0.1)
    batch = queue.get(["q"], max_count=6, timeout_s=1)
    queue.ack([Completion(batch[0], b"r")])
    queue.retry(batch[1], b"y", delay_s=0.05, error="e")
    queue.dead_letter(batch[2], "dead")
    queue.hand_back([batch[3]])
    assert queue.reclaim("worker", "worker died: signal 9") == 2
    # When everything left is drained and acked
    deadline = time.monotonic() + 5.0
    done = 1
    while done < 6 and time.monotonic() < deadline:
        got = queue.get(["q"], max_count=10, timeout_s=0.2)
        queue.ack([Completion(d) for d in got])
        done += len(got)
    # Then only the fixed keys remain (no waiting marker is left), plus keys that expire
    client = redis.Redis.from_url(redis_url)
    tag = keys.tag("q").encode()
    per_job = {tag + b"j:", tag + b"f:", tag + b"h:"}
    leftover = set()
    for key in client.keys("*"):
        if key[: len(tag) + 2] in per_job:
            assert client.pttl(key) > 0, key
        else:
            leftover.add(key)
    assert done == 6
    fixed = {tag + name for name in (b"seq", b"l", b"e", b"b", b"dl", b"n")}
    fixed |= {keys.REGISTRY_KEY.encode(), keys.REGISTRY_EPOCH_KEY.encode()}
    assert leftover <= fixed
    assert client.hlen(keys.of("q").running) == 0
    client.close()


def test_status_results_and_wait_finished(make_queue: MakeQueue) -> None:
    # Given two threads waiting for a job that is running
    import threading

    producer, consumer = make_queue(), make_queue()
    producer.put("q", "w", b"x")
    queued = producer.status("w")
    assert queued is not None
    assert queued.status == "queued"
    [delivery] = consumer.get(["q"], timeout_s=1)
    running = producer.status("w")
    assert running is not None
    assert running.status == "running"
    results: list[object] = []
    waiters = [
        threading.Thread(target=lambda: results.append(producer.wait_finished("w", 10)))
        for _ in range(2)
    ]
    for waiter in waiters:
        waiter.start()
    # When the job is acked with a result
    consumer.ack([Completion(delivery, b'{"answer": 42}')])
    for waiter in waiters:
        waiter.join(10)
    # Then both waiters wake with the result, and status says done
    assert len(results) == 2
    for status in results:
        assert status == producer.status("w")
    final = producer.status("w")
    assert final is not None
    assert (final.status, final.result, final.attempts) == ("done", b'{"answer": 42}', 1)
    assert producer.wait_finished("never", 0.3) is None


def test_result_ttl_zero_keeps_nothing(make_queue: MakeQueue) -> None:
    # Given results are not kept
    queue = make_queue(result_ttl_s=0)
    queue.put("q", "n", b"x")
    [delivery] = queue.get(["q"], timeout_s=1)
    # When the job is acked with a result
    queue.ack([Completion(delivery, b"r")])
    # Then nothing is known about it any more
    assert queue.status("n") is None


def test_bounded_queue_raises_when_full(make_queue: MakeQueue) -> None:
    from services.errors import QueueFullError

    # Given a queue bounded to two jobs, already full
    queue = make_queue(max_depth=2, put_timeout_s=0.3)
    queue.put_many("q", [("a", b"1"), ("b", b"2")])
    # When a third is put
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        queue.put("q", "c", b"3")
    # Then put waited about its timeout, and nothing was added
    assert 0.25 <= time.monotonic() - started < 2.0
    assert queue.depth("q") == 2


def test_bounded_put_waits_for_room(make_queue: MakeQueue) -> None:
    import threading

    # Given a full bounded queue and a consumer that takes one job soon
    producer = make_queue(max_depth=1, put_timeout_s=5)
    consumer = make_queue()
    producer.put("q", "a", b"1")
    taker = threading.Thread(target=lambda: consumer.get(["q"], timeout_s=5))
    # When a put waits while the consumer takes
    taker.start()
    producer.put("q", "b", b"2")
    taker.join(5)
    # Then the put went through once there was room
    [delivery] = consumer.get(["q"], timeout_s=1)
    assert delivery.job_id == "b"


@pytest.mark.parametrize(
    "body",
    [b"", b"\x80\x04\x95pickle\x00\xff", bytes(range(256)) * 4, b"z" * (4 * 1024 * 1024)],
    ids=["empty", "pickle", "binary", "4MiB"],
)
def test_arbitrary_bodies_and_ids_survive(make_queue: MakeQueue, body: bytes) -> None:
    # Given odd bodies and ids (unicode, separators, a 32-hex id in upper case)
    queue = make_queue()
    ids = ["ünïcode:id\n1", "ABCDEF0123456789ABCDEF0123456789", "x" * 255]
    queue.put_many("q", [(job_id, body) for job_id in ids])
    # When they are taken and dead-lettered
    got = queue.get(["q"], max_count=3, timeout_s=1)
    for delivery in got:
        assert queue.dead_letter(delivery, "malformed")
    # Then bytes and ids are unchanged everywhere
    assert [(d.job_id, d.body) for d in got] == [(job_id, body) for job_id in ids]
    letters = queue.dead_letters("q")
    assert sorted((d.job_id, d.body) for d in letters) == sorted((i, body) for i in ids)


def test_release_counts_only_suspects(make_queue: MakeQueue) -> None:
    # Given a dead child that was running one job and had prefetched another
    supervisor = make_queue(max_redeliveries=3)
    supervisor.put_many("q", [("ran", b"1"), ("prefetched", b"2")])
    child = make_queue(consumer_id="child")
    assert len(child.get(["q"], max_count=2, timeout_s=1)) == 2
    # When the supervisor releases it naming the running job as the suspect
    assert supervisor.reclaim("child", "worker died: signal 9", suspects=["ran"]) == 2
    # Then only the suspect counts a redelivery
    got = supervisor.get(["q"], max_count=2, timeout_s=1)
    assert sorted((d.job_id, d.redeliveries) for d in got) == [("prefetched", 0), ("ran", 1)]


def test_started_from_threads_while_the_heartbeat_publishes(
    make_queue: MakeQueue, redis_url: str
) -> None:
    # Given a consumer holding 200 deliveries
    queue = make_queue()
    queue.put_many("q", [(f"job-{i}", b"x") for i in range(200)])
    held = get_within(queue, ["q"], 5, max_count=200)
    assert len(held) == 200
    errors: list[BaseException] = []
    stop = threading.Event()

    def guard(work: Callable[[], None], rounds: int | None) -> Callable[[], None]:
        def run() -> None:
            try:
                done = 0
                while not stop.is_set() and (rounds is None or done < rounds):
                    work()
                    done += 1
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        return run

    def toggle(part: list[Delivery]) -> Callable[[], None]:
        def work() -> None:
            for delivery in part:
                queue.started([delivery])
            queue.started(part, running=False)

        return work

    # When four executor threads mark their deliveries started and not, over and over, while
    # the heartbeat publishes the prefetched ones
    executors = [threading.Thread(target=guard(toggle(held[i::4]), 200)) for i in range(4)]
    beat = threading.Thread(target=guard(queue._renew, None))
    for thread in [beat, *executors]:
        thread.start()
    for thread in executors:
        thread.join(30)
    stop.set()
    beat.join(10)
    # Then nothing raised, and the last beat publishes exactly the deliveries not started
    assert not errors, errors
    queue.started(held[:50])
    queue._renew()
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    published = admin.smembers(keys.prefetched_key("q", queue.consumer_id))
    admin.close()
    assert published == {d.receipt.split(":")[0] for d in held[50:]}


def test_a_start_noted_after_its_settlement_is_ignored() -> None:
    # Given a token held, then settled
    tokens = Tokens()
    tokens.add([("q", "1"), ("q", "2")])
    tokens.settle([("q", "1")])
    # When an executor thread reports it started only now (it raced the settlement)
    tokens.start([("q", "1"), ("q", "2")], running=True)
    # Then only the token still held counts as running, and none is prefetched
    assert tokens.running() == {("q", "2")}
    assert tokens.snapshot() == ({("q", "2")}, [])
