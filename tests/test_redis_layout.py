"""The cluster-ready key layout on a real redis-server: every key a script touches shares the
tag of its queue, the layout before 0.2 is refused, jobs are found by id on any queue, and a
consumer of several queues keeps their priority order with FETCH per queue.

The first test watches the server with ``MONITOR``: Redis logs a script's call, then each
command the script runs (``[0 lua]``), with nothing in between (scripts are atomic), so every
``lua`` line belongs to the ``EVALSHA`` above it. ``COMMAND GETKEYS`` says which arguments of a
line are keys.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from services.backends.redis import aborts, keys, unique
from services.backends.redis import limit_scripts as limit_lua
from services.backends.redis import scripts as lua
from services.backends.redis.limits import limit_tag, queue_call
from services.backends.redis.queue import RedisQueue
from services.backends.redis.routing import by_queue, slot_groups
from services.errors import ConfigError
from services.limits import ConcurrencyLimit, RateLimit
from services.protocol import Completion, JobStatus
from tests.redis_fixtures import MakeQueue

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("alpha", "beta:2")
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def unescape(text: bytes) -> bytes:
    """An argument of a MONITOR line as the client sent it (Redis escapes like ``repr``)."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i : i + 1] != b"\\":
            out += text[i : i + 1]
            i += 1
        elif text[i + 1 : i + 2] == b"x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            nxt = text[i + 1 : i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


@dataclass
class ScriptRun:
    """One EVALSHA seen by MONITOR and the keys of the commands its script ran."""

    sha: str
    declared: list[bytes]
    touched: list[bytes] = field(default_factory=list)


class Watch:
    """MONITOR on its own connection, in a thread, until ``stop``."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()  # type: ignore[no-untyped-call]
        self._monitor.__enter__()
        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            line = self._monitor.connection.read_response()
            self.lines.append(line)
            if b'"stop-the-watch"' in line:
                return

    def stop(self, admin: redis.Redis) -> None:
        admin.echo("stop-the-watch")
        self._thread.join(30)
        assert not self._thread.is_alive(), "MONITOR never saw the stop line"
        self._monitor.__exit__()
        self._client.close()


def script_runs(admin: redis.Redis, lines: list[bytes]) -> list[ScriptRun]:
    """The EVALSHA calls among ``lines``, each with the keys its ``lua`` lines touched."""
    runs: list[ScriptRun] = []
    lua_lines: list[tuple[int, list[bytes]]] = []
    for line in lines:
        args = [unescape(a) for a in _ARG.findall(line.split(b"] ", 1)[1])]
        if b" [0 lua] " in line:
            assert runs, f"a script command before any EVALSHA: {line!r}"
            lua_lines.append((len(runs) - 1, args))
        elif args and args[0].lower() == b"evalsha":
            numkeys = int(args[2])
            runs.append(ScriptRun(args[1].decode(), args[3 : 3 + numkeys]))
    pipe = admin.pipeline(transaction=False)
    for _, args in lua_lines:
        pipe.command_getkeys(*args)
    for (index, _), found in zip(lua_lines, pipe.execute(raise_on_error=False), strict=True):
        if not isinstance(found, Exception):  # TIME and the like: no key
            runs[index].touched.extend(k.encode() if isinstance(k, str) else k for k in found)
    return runs


def workload(make_queue: MakeQueue, admin: redis.Redis) -> None:
    """Every script, on two queues: put, delayed put, unique put, get, ack, retry, dead letter,
    hand back, reclaim, lease recovery, confirm, heartbeat, cancel, revive, status, malformed
    elements."""
    a, b = make_queue("A", lease_s=1.5), make_queue("B", lease_s=1.5)
    for queue in QUEUES:
        a.put_many(queue, [(f"{queue}-{n}", b"x") for n in range(8)])
        a.put(queue, f"{queue}-later", b"x", delay_s=0.05)
        admin.rpush(keys.of(queue).waiting, b"\x00")  # malformed: dead-lettered by FETCH
        assert a.cancel(f"{queue}-7").cancelled
        held = a.get([queue], max_count=7, timeout_s=1)
        assert a.ack([Completion(held[0], b"r")]) == 0
        assert a.retry(held[1], b"y", delay_s=0, error="e")
        assert a.retry(held[2], b"y", delay_s=30, error="e")
        assert a.dead_letter(held[3], "boom")
        a.hand_back([held[4]])
        a.started([held[5]])
        assert a.confirm(held[5:]) == held[5:]
        a._heartbeat.beat_once()
        assert a.abort(held[5].job_id).cancelled  # ABORT, then ABORTED finds it
        assert a.aborted(held[5:]) == [held[5]]
        assert b.reclaim("A", "worker died") >= 1
        assert b.revive(queue) == 1
        assert a.status(held[0].job_id) is not None
        assert a.put_unique(queue, f"{queue}-u", b"x", key="u", ttl_s=60) == f"{queue}-u"
        assert a.put_unique(queue, f"{queue}-v", b"x", key="u", ttl_s=None) == f"{queue}-u"
    taken = b.get(list(QUEUES), max_count=50, timeout_s=1)
    assert {d.queue for d in taken} == set(QUEUES)
    # B's lease on the second queue expires (no heartbeat renews it) and A recovers its jobs
    a._heartbeat.stop()
    b._heartbeat.stop()
    admin.zadd(keys.of(QUEUES[1]).leases, {"B": 0})
    assert a._recover() >= 1


def test_every_key_a_script_touches_shares_its_queues_tag(
    redis_url: str, make_queue: MakeQueue
) -> None:
    # Given MONITOR on the server
    admin = redis.Redis.from_url(redis_url)
    watch = Watch(redis_url)
    # When a workload runs every script on two queues
    try:
        workload(make_queue, admin)
    finally:
        watch.stop(admin)
    runs = script_runs(admin, watch.lines)
    admin.close()
    # Then every call declared keys (real KEYS), all of one queue's tag, and its script touched
    # keys of that tag only: never the registry's, the fleet's or another queue's
    assert runs
    tags = {keys.tag(queue).encode() for queue in QUEUES}
    for run in runs:
        assert run.declared, f"EVALSHA {run.sha} with numkeys 0"
        [tag] = {key[: key.index(b"}:") + 2] for key in run.declared}
        assert tag in tags, run
        strays = [key for key in run.touched if not key.startswith(tag)]
        assert not strays, f"script {run.sha} of {tag!r} touched {strays}"
    # And the workload ran every queue script on both queues
    sources = {name: getattr(lua, name) for name in lua.SCRIPT_KEYS}
    sources["UNIQUE"] = unique.unique_script()
    sources |= aborts.SOURCES
    names = {hashlib.sha1(source.encode()).hexdigest(): name for name, source in sources.items()}
    seen = {(names[run.sha], run.declared[0][: run.declared[0].index(b"}:") + 2]) for run in runs}
    assert seen >= {(name, tag) for name in sources for tag in tags}


@pytest.mark.parametrize("name", sorted(lua.SCRIPT_KEYS))
def test_each_script_names_only_the_keys_it_declares(name: str) -> None:
    # Given a script's Lua, When the fixed keys its own body names (K.<field>) are read
    source: str = getattr(lua, name)
    body = source.split(lua._COMMON, 1)[1]
    used = set(re.findall(r"\bK\.([a-z]+)", body))
    # Then they are declared in its KEYS, and every declared one is a key of keys.QueueKeys
    assert used <= set(lua.SCRIPT_KEYS[name]), sorted(used - set(lua.SCRIPT_KEYS[name]))
    assert set(lua.SCRIPT_KEYS[name]) <= set(keys.QueueKeys.__dataclass_fields__)


# -- the layout before 0.2 ---------------------------------------------------------------------


@pytest.fixture
def old_layout(redis_url: str) -> Iterator[str]:
    """The test server holding a key of the layout before 0.2."""
    admin = redis.Redis.from_url(redis_url)
    admin.set("cv:marker", "0123456789abcdef")
    admin.rpush("cv:q:default", b"\x00\x00" + bytes(16) + b"{}")
    yield redis_url
    admin.close()


def test_a_worker_refuses_a_redis_in_the_old_layout_with_exit_2(old_layout: str) -> None:
    # Given a Redis with Conveyor data in the layout before 0.2
    # When a worker starts on it
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "worker", "--jobs", "tests.jobs:registry",
         "--concurrency", "1", "--url", old_layout],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Then it exits 2 at once, saying what to do
    assert result.returncode == 2, result.stderr
    assert "layout before 0.2" in result.stderr, result.stderr
    assert "conveyor worker --burst" in result.stderr
    assert "redis-cli --scan --pattern 'cv:*'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_producer_refuses_the_old_layout_and_writes_nothing(
    old_layout: str, make_queue: MakeQueue
) -> None:
    admin = redis.Redis.from_url(old_layout)
    before = set(admin.keys("*"))
    with pytest.raises(ConfigError, match=r"layout before 0\.2"):
        make_queue().put("default", "j", b"x")
    assert set(admin.keys("*")) == before
    admin.close()


# -- finding a job by id ------------------------------------------------------------------------


def state(queue: RedisQueue, job_id: str) -> str | None:
    found = queue.status(job_id)
    return None if found is None else found.status


def test_status_cancel_and_wait_finished_find_a_job_on_any_queue(make_queue: MakeQueue) -> None:
    # Given jobs on three queues (and a job id used on two of them: ids are per queue)
    producer, consumer = make_queue(), make_queue("C")
    producer.put("a", "on-a", b"1")
    producer.put("b", "on-b", b"2", delay_s=60)
    producer.put("c", "on-c", b"3")
    producer.put("c", "waits", b"4")
    assert producer.put("a", "twice", b"5") and producer.put("c", "twice", b"6")
    # Then status finds each on its queue
    assert [state(producer, i) for i in ("on-a", "on-b", "on-c", "nowhere")] == [
        "queued", "scheduled", "queued", None,
    ]  # fmt: skip
    # When a job of the second queue is cancelled
    assert producer.cancel("on-b").cancelled
    assert not producer.cancel("nowhere").cancelled
    assert producer.counts("b").dead == 1
    # And a waiter blocks on a job of the third queue while a consumer finishes it
    found: list[JobStatus | None] = []
    waiter = threading.Thread(target=lambda: found.append(producer.wait_finished("on-c", 20)))
    waiter.start()
    held = consumer.get(["c"], max_count=1, timeout_s=1)
    assert [d.job_id for d in held] == ["on-c"]
    assert consumer.ack([Completion(held[0], b"r")]) == 0
    waiter.join(30)
    # Then the waiter saw it done, with its result, and the cancelled job is dead
    [status] = found
    assert status is not None and (status.status, status.result) == ("done", b"r")
    assert state(producer, "on-b") == "dead"
    assert producer.wait_finished("waits", 0.3) is None
    assert producer.queues() == ["a", "b", "c"]


def test_wait_finished_on_an_id_put_later_finds_it(make_queue: MakeQueue) -> None:
    # Given a waiter on an id no queue knows yet
    producer, consumer = make_queue(), make_queue("C")
    producer.put("other", "x", b"0")
    found: list[JobStatus | None] = []
    waiter = threading.Thread(target=lambda: found.append(producer.wait_finished("late", 20)))
    waiter.start()
    # When the job is put on a queue and finished
    producer.put("second", "late", b"1")
    [delivery] = consumer.get(["second"], timeout_s=5)
    assert consumer.ack([Completion(delivery)]) == 0
    waiter.join(30)
    # Then the waiter saw it
    assert [s.status if s else None for s in found] == ["done"]


# -- several queues, in priority order ----------------------------------------------------------


def test_a_consumer_of_three_queues_keeps_their_priority_order(make_queue: MakeQueue) -> None:
    # Given jobs on three queues
    producer, consumer = make_queue(), make_queue("C")
    producer.put_many("low", [(f"l{n}", b"") for n in range(2)])
    producer.put_many("mid", [(f"m{n}", b"") for n in range(3)])
    producer.put_many("high", [(f"h{n}", b"") for n in range(2)])
    order = ["high", "mid", "low"]
    # When it takes four at a time
    first = consumer.get(order, max_count=4, timeout_s=1)
    second = consumer.get(order, max_count=4, timeout_s=1)
    # Then the first queue is emptied first, then the next, each in FIFO order
    assert [d.job_id for d in first] == ["h0", "h1", "m0", "m1"]
    assert [d.job_id for d in second] == ["m2", "l0", "l1"]
    assert [d.queue for d in first + second] == ["high"] * 2 + ["mid"] * 3 + ["low"] * 2
    # And settling a batch spanning queues settles each on its own queue
    assert consumer.ack([Completion(d) for d in first + second]) == 0
    assert [consumer.counts(q).done for q in order] == [2, 3, 2]


def test_an_idle_consumer_of_three_queues_wakes_for_any_and_takes_the_first_queue_first(
    make_queue: MakeQueue,
) -> None:
    # Given a consumer blocked on three empty queues
    producer, consumer = make_queue(), make_queue("C")
    order = ["q1", "q2", "q3"]
    for queue in order:  # registers them
        producer.put(queue, f"seed-{queue}", b"")
    assert len(consumer.get(order, max_count=10, timeout_s=1)) == 3
    taken: list[list[str]] = []
    waiter = threading.Thread(
        target=lambda: taken.append([d.job_id for d in consumer.get(order, timeout_s=20)])
    )
    waiter.start()
    time.sleep(0.2)  # let it block (no assertion depends on it: it only makes the wake real)
    # When a job arrives on the last queue
    producer.put("q3", "late", b"")
    waiter.join(30)
    # Then it wakes and takes it
    assert taken == [["late"]]


def test_routing_groups_by_queue_and_slot() -> None:
    # Given items of two queues, and a non-cluster client
    items = [("b", 1), ("a", 2), ("b", 3)]
    # Then by_queue keeps the order within each queue, queues in first-seen order
    assert by_queue(items, lambda item: item[0]) == {"b": [("b", 1), ("b", 3)], "a": [("a", 2)]}
    # And a single node waits on all bells at once
    client = redis.Redis()
    assert slot_groups(client, ["cv:{a}:b", "cv:{b}:b"]) == [[0, 1]]
    client.close()


# -- the limits' scripts (``limit_scripts``) -----------------------------------------------------


def limits_workload(make_queue: MakeQueue) -> None:
    """Every limit script on two queues and two limits: admit (ACQUIRE, RATE), park (PARK),
    release and wake (RELEASE, WAKE, with a parked waiter and with a wake before the park),
    renew with the heartbeat (RENEW)."""
    a, b = make_queue("A", lease_s=1.5), make_queue("B", lease_s=1.5)
    mutex = (ConcurrencyLimit("lay:mutex", 1),)
    rate = (RateLimit("lay-rate", 1, 60.0),)
    for queue in QUEUES:
        a.put_many(queue, [(f"{queue}-{n}", b"x") for n in range(4)])
        held = a.get([queue], max_count=4, timeout_s=1)
        assert a.admit(held[0], mutex)
        assert not a.admit(held[1], mutex)
        a._heartbeat.beat_once()
        assert a.ack([Completion(held[0])]) == 0  # wakes held[1], parked
        assert [a.admit(d, rate) for d in held[2:]].count(True) <= 1  # one start a minute
    a._limits._scripts.run("wake", queue_call("WAKE", QUEUES[0], "never-parked"))
    b.close()


def test_every_key_a_limit_script_touches_shares_its_tag(
    redis_url: str, make_queue: MakeQueue
) -> None:
    # Given MONITOR on the server
    admin = redis.Redis.from_url(redis_url)
    watch = Watch(redis_url)
    # When the limit scripts run on two queues and two limits
    try:
        limits_workload(make_queue)
    finally:
        watch.stop(admin)
    runs = script_runs(admin, watch.lines)
    admin.close()
    # Then each call declared keys of one tag (a queue's, or a limit's own) and touched no other
    names = {
        hashlib.sha1(limit_lua.source(name).encode()).hexdigest(): name
        for name in (*limit_lua.LIMIT_KEYS, *limit_lua.QUEUE_KEYS)
    }
    seen = set()
    for run in runs:
        assert run.declared, f"EVALSHA {run.sha} with numkeys 0"
        [tag] = {key[: key.index(b"}:") + 2] for key in run.declared}
        strays = [key for key in run.touched if not key.startswith(tag)]
        assert not strays, f"script {run.sha} of {tag!r} touched {strays}"
        if run.sha in names:
            seen.add((names[run.sha], tag))
    # And every limit script ran, each on the tags it belongs to
    queue_tags = {keys.tag(queue).encode() for queue in QUEUES}
    limit_tags = {limit_tag(key).encode() for key in ("lay:mutex", "lay-rate")}
    assert {name for name, _ in seen} == {*limit_lua.LIMIT_KEYS, *limit_lua.QUEUE_KEYS}
    for name, tag in seen:
        assert tag in (queue_tags if name in limit_lua.QUEUE_KEYS else limit_tags), (name, tag)
