"""The Redis backend when things go wrong: outages, restarts, bad config, ACLs, paused workers.

These tests kill and restart the session's redis-server; the ``redis_url`` fixture brings it
back with the default configuration for the next test.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from services.backends.redis import keys
from services.backends.redis.connection import make_client
from services.backends.redis.queue import RedisQueue
from services.errors import BackendUnavailableError, ConfigError
from services.protocol import Completion, Delivery
from services.settings import QueueSettings
from tests.redis_fixtures import RedisServer, documented_acl

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def opened() -> Iterator[list[RedisQueue]]:
    """Queues to close after the test."""
    queues: list[RedisQueue] = []
    yield queues
    for queue in queues:
        queue.close()


def open_queue(opened: list[RedisQueue], url: str, **settings: object) -> RedisQueue:
    queue = RedisQueue(url, QueueSettings(**settings))  # type: ignore[arg-type]
    opened.append(queue)
    return queue


def raises_within(call: Callable[[], object], limit_s: float) -> float:
    """Seconds ``call`` took to raise BackendUnavailableError (fails if it did not)."""
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < limit_s
    return elapsed


def test_outage_raises_within_timeout_then_recovers(
    redis_server: RedisServer, redis_url: str, opened: list[RedisQueue]
) -> None:
    # Given a queue with a 0.5 s operation timeout and a job in flight, on a persistent Redis
    redis_server.kill()
    redis_server.start(persistent=True)
    queue = open_queue(opened, redis_url, op_timeout_s=0.5, put_timeout_s=0.5)
    queue.put("q", "before", b"x")
    [held] = queue.get(["q"], timeout_s=1)
    # When Redis dies
    redis_server.kill()
    # Then every call raises BackendUnavailableError within its timeout, nothing is dropped
    raises_within(lambda: queue.put("q", "during", b"y"), 3.0)
    raises_within(lambda: queue.get(["q"], timeout_s=0.2), 2.0)
    raises_within(lambda: queue.ack([Completion(held)]), 2.0)
    raises_within(lambda: queue.status("before"), 2.0)
    # When it comes back with its data
    redis_server.start(persistent=True)
    # Then the same queue works again: the job that was in flight can be acked
    assert queue.ack([Completion(held)]) == 0
    queue.put("q", "after", b"z")
    assert [d.job_id for d in queue.get(["q"], timeout_s=1)] == ["after"]


def test_heartbeat_survives_an_outage(
    redis_server: RedisServer, redis_url: str, opened: list[RedisQueue]
) -> None:
    # Given a consumer with a running heartbeat and a job in flight
    redis_server.kill()
    redis_server.start(persistent=True)
    queue = open_queue(opened, redis_url, lease_s=3.0, op_timeout_s=0.5)
    queue.put("q", "j", b"x")
    [held] = queue.get(["q"], timeout_s=1)
    # When Redis is down for a moment, then back
    redis_server.kill()
    raises_within(lambda: queue.depth("q"), 2.0)
    redis_server.start(persistent=True)
    # Then the heartbeat thread is still alive and renews the lease again
    client = redis.Redis.from_url(redis_url)
    first = client.zscore(keys.of("q").leases, queue.consumer_id)
    deadline = time.monotonic() + 5.0
    while client.zscore(keys.of("q").leases, queue.consumer_id) == first:
        assert time.monotonic() < deadline, "lease not renewed after the outage"
        time.sleep(0.05)
    client.close()
    assert queue._heartbeat.running
    assert queue.ack([Completion(held)]) == 0


def test_restart_empty_is_reported(
    redis_server: RedisServer,
    redis_url: str,
    opened: list[RedisQueue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a worker that checked the server once
    queue = open_queue(opened, redis_url)
    queue.put("q", "j", b"x")
    assert not any("EMPTY" in w for w in queue.check_server())
    # When Redis restarts without persistence
    redis_server.kill()
    redis_server.start()
    # Then the next check reports lost data instead of an empty queue, at ERROR level
    with caplog.at_level(logging.ERROR, logger="conveyor.redis"):
        warnings = queue.check_server()
    assert any("restarted EMPTY" in w for w in warnings)
    assert any(r.levelno == logging.ERROR and "EMPTY" in r.message for r in caplog.records)
    # And it stays reported (sticky), logged once
    assert any("EMPTY" in w for w in queue.check_server())
    assert queue.alarms() == [w for w in warnings if "EMPTY" in w]
    assert len([r for r in caplog.records if "EMPTY" in r.message]) == 1


def test_restart_with_data_is_not_reported(
    redis_server: RedisServer, redis_url: str, opened: list[RedisQueue]
) -> None:
    # Given a persistent Redis that a worker checked
    redis_server.kill()
    redis_server.start(persistent=True)
    queue = open_queue(opened, redis_url)
    # (An id of its own: the AOF directory may hold an earlier test's finished "j".)
    assert queue.put("q", "restart-with-data", b"x")
    queue.check_server()
    # When it restarts (SIGKILL, AOF on)
    redis_server.kill()
    redis_server.start(persistent=True)
    # Then nothing is reported lost and the job is still there
    assert not any("EMPTY" in w for w in queue.check_server())
    assert queue.depth("q") == 1


def test_eviction_policy_and_persistence_warnings(
    redis_server: RedisServer,
    redis_url: str,
    opened: list[RedisQueue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a Redis that may evict keys and saves nothing
    redis_server.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    queue = open_queue(opened, redis_url)
    # When the backend checks it
    with caplog.at_level(logging.WARNING, logger="conveyor.redis"):
        warnings = queue.check_server()
    # Then both problems are reported and logged
    assert any("maxmemory-policy allkeys-lru" in w for w in warnings)
    assert any("no persistence" in w for w in warnings)
    assert len([r for r in caplog.records if r.name == "conveyor.redis"]) >= 2


def test_acl_restricted_user_can_do_everything(
    redis_server: RedisServer,
    redis_url: str,
    opened: list[RedisQueue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a user with only the commands of the module docstring, on the cv:* keys
    name, rules = documented_acl("s3cret-pw")
    redis_server.cli("ACL", "SETUSER", name, *rules)
    url = f"redis://{name}:s3cret-pw@127.0.0.1:{redis_server.port}/0"
    # When a producer and two consumers use every operation through it
    with caplog.at_level(logging.DEBUG):
        producer = open_queue(opened, url, lease_s=0.5)
        a, b = open_queue(opened, url, lease_s=0.5), open_queue(opened, url, lease_s=0.5)
        producer.check_server()
        producer.put_many("q", [("1", b"a"), ("2", b"b"), ("3", b"c")])
        producer.put("q", "4", b"d", delay_s=0.05)
        first = a.get(["q"], max_count=2, timeout_s=1)
        assert a.ack([Completion(first[0], b"r")]) == 0
        assert a.retry(first[1], b"b2", delay_s=0, error="e")
        assert producer.wait_finished("1", 1) is not None
        second = a.get(["q"], max_count=1, timeout_s=1)
        assert a.dead_letter(second[0], "bad")
        assert producer.revive("q") == 1
        a.hand_back(a.get(["q"], timeout_s=1))
        a.get(["q"], timeout_s=1)
        assert producer.reclaim(a.consumer_id, "worker died") == 1
        b.get(["q"], max_count=5, timeout_s=1)
        b._heartbeat.stop()
        got: list[Delivery] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += a.get(["q"], max_count=5, timeout_s=0.2)
        assert producer.status("1") is not None
        assert producer.depth("q") == 0
    # Then it all worked (lease recovery included), and the password never reached a log or repr
    assert sorted(d.job_id for d in got) == ["2", "3", "4"]
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in repr(producer)
    assert "s3cret-pw" not in repr(producer.connector("c1"))


def test_wrong_password_is_a_config_error(redis_server: RedisServer, redis_url: str) -> None:
    # Given a user whose password we get wrong
    redis_server.cli("ACL", "SETUSER", "conveyor", "on", ">right", "~cv:*", "+@all")
    url = f"redis://conveyor:wrong@127.0.0.1:{redis_server.port}/0"
    queue = RedisQueue(url, QueueSettings())
    # When it is used, Then the error says so and does not show the password
    with pytest.raises(ConfigError) as caught:
        queue.depth("q")
    assert "wrong" not in str(caught.value)
    queue.close()


def test_rediss_and_unix_urls_are_parsed() -> None:
    # Given TLS and unix-socket URLs with credentials (nothing listens: no connection is made)
    tls = make_client("rediss://user:pw@example.invalid:6380/2", timeout_s=1)
    unix = make_client("unix:///tmp/nowhere.sock?db=3", timeout_s=1)
    # Then they map to TLS and unix-socket connections with our timeouts
    kwargs = tls.connection_pool.connection_kwargs
    assert tls.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (
        "example.invalid",
        6380,
        2,
        1,
    )
    assert unix.connection_pool.connection_class is redis.UnixDomainSocketConnection
    assert unix.connection_pool.connection_kwargs["path"] == "/tmp/nowhere.sock"


def test_connector_pickles_and_opens_as_its_consumer(redis_url: str) -> None:
    # Given a connector made by the supervisor for child "c7"
    parent = RedisQueue(redis_url, QueueSettings(lease_s=2))
    connector = pickle.loads(pickle.dumps(parent.connector("c7")))
    # When a child opens it
    child = connector.open()
    # Then it consumes as c7 with the parent's settings
    assert child.consumer_id == "c7"
    assert isinstance(child, RedisQueue)
    assert child.settings.lease_s == 2
    assert parent.consumer_id.count(":") == 2
    child.close()
    parent.close()


_PAUSED_CHILD = textwrap.dedent(
    """
    import sys
    from services.backends.redis.queue import RedisQueue
    from services.protocol import Completion, Delivery
    from services.settings import QueueSettings
    queue = RedisQueue(sys.argv[1], QueueSettings(lease_s=0.5), consumer_id="paused")
    [held] = queue.get(["q"], timeout_s=5)
    print("got", held.job_id, flush=True)
    sys.stdin.readline()  # the test SIGSTOPs us here, then SIGCONTs and writes a line
    print("rejected", queue.ack([Completion(held, b"late")]), flush=True)
    queue.close()
    """
)


@pytest.mark.slow
def test_sigstopped_consumer_is_fenced(redis_url: str) -> None:
    # Given a child process holding a job with a 0.5 s lease
    other = RedisQueue(redis_url, QueueSettings(lease_s=0.5), consumer_id="other")
    other.put("q", "j", b"x")
    child = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CHILD, redis_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().split() == ["got", "j"]
        # When it is paused (SIGSTOP) past its lease, and another consumer takes the job
        child.send_signal(signal.SIGSTOP)
        got: list[Delivery] = []
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            got = other.get(["q"], timeout_s=0.2)
        assert [(d.job_id, d.redeliveries) for d in got] == [("j", 1)]
        child.send_signal(signal.SIGCONT)
        child.stdin.write("go\n")
        child.stdin.flush()
        # Then the paused child's late ack is rejected, and the new holder's is accepted
        assert child.stdout.readline().split() == ["rejected", "1"]
        assert other.ack([Completion(got[0], b"on time")]) == 0
        status = other.status("j")
        assert status is not None
        assert status.result == b"on time"
    finally:
        child.kill()
        child.communicate(timeout=10)  # reaps it and closes its pipes
        other.close()
