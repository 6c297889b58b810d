"""A lone put on one server goes out pre-packed on a kept connection (``calls.Scripts.run_kept``,
``connection.KeptConnections``): the same reply and errors as redis-py's own path, a lost script
loaded again, a dead or idle-closed connection replaced, a fork's parent sockets never reused,
and ``close`` still closing it. Real redis-server (the suite's fixtures)."""

from __future__ import annotations

import os
import secrets
import threading
from typing import Any

import pytest
import redis

from services.backends.redis import connection as redis_connection
from services.backends.redis.connection import KeptConnections
from services.backends.redis.queue import RedisQueue
from tests.redis_fixtures import MakeQueue


def kept_of(queue: RedisQueue) -> KeptConnections:
    kept = queue._scripts._kept
    assert kept is not None, "a one-server queue keeps connections for its puts"
    return kept


def kept_connections(kept: KeptConnections) -> list[Any]:
    return [connection for connection, _ in kept._idle]


def evalsha_calls(url: str) -> int:
    with redis.Redis.from_url(url) as admin:
        return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_lone_puts_share_one_kept_connection_and_store_each_job(make_queue: MakeQueue) -> None:
    # Given a queue
    queue = make_queue()
    # When it puts three jobs, one at a time, one of them twice
    ids = [secrets.token_hex(16) for _ in range(3)]
    flags = [queue.put("q", job_id, b"body", new_ids=True) for job_id in ids]
    again = queue.put("q", ids[0], b"other")
    # Then each is stored once, through one connection that is still connected
    assert flags == [True, True, True] and again is False
    assert queue.depth("q") == 3
    [kept] = kept_connections(kept_of(queue))
    assert kept._sock is not None


def test_a_flushed_script_is_loaded_again_and_the_put_stored(
    make_queue: MakeQueue, redis_url: str
) -> None:
    # Given a queue whose PUT script Redis has forgotten (SCRIPT FLUSH, or a restart)
    queue = make_queue()
    assert queue.put("q", "first", b"x")
    with redis.Redis.from_url(redis_url) as admin:
        admin.script_flush()
    # When it puts a job
    stored = queue.put("q", "second", b"x")
    # Then the script was loaded again, the job stored, and the kept connection kept (an error
    # reply leaves it usable)
    assert stored is True
    assert queue.depth("q") == 2
    [kept] = kept_connections(kept_of(queue))
    assert kept._sock is not None


def test_an_error_reply_is_raised_as_through_redis_py(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue whose next PUT answers an error reply from the script (a malformed element)
    queue = make_queue()
    assert queue.put("q", "first", b"x")
    monkeypatch.setattr("services.backends.redis.keys.pack_element", lambda *_: b"")
    # When it puts a job, Then the error reply is raised as redis-py raises it, nothing stored
    with pytest.raises(redis.ResponseError, match="PUT element 1"):
        queue.put("q", "second", b"x")
    assert queue.depth("q") == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_put(
    make_queue: MakeQueue, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue whose kept connection Redis closed (CLIENT KILL, as an idle timeout or a
    # restart would), and that counts as idle (the check's threshold at zero)
    queue = make_queue()
    assert queue.put("q", "first", b"x")
    [old] = kept_connections(kept_of(queue))
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.client_kill_filter(_id=old_client_id(old)) == 1
    monkeypatch.setattr(redis_connection, "_STALE_AFTER_S", 0.0)
    kept, before = kept_of(queue), evalsha_calls(redis_url)
    real, attempts = kept.call, []

    def call(packed: bytes) -> Any:
        attempts.append(packed)
        return real(packed)

    monkeypatch.setattr(kept, "call", call)
    # When it puts a job
    stored = queue.put("q", "second", b"x")
    # Then the put went out once, on a new socket: no failed attempt to retry
    assert stored is True
    assert len(attempts) == 1
    assert evalsha_calls(redis_url) - before == 1
    assert queue.depth("q") == 2


def old_client_id(connection: Any) -> int:
    """The server-side id of ``connection`` (asked on that very connection)."""
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


def test_a_connection_lost_mid_put_is_dropped_and_the_put_retried(
    make_queue: MakeQueue, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue whose kept connection Redis closed just now (not idle: no check before use)
    queue = make_queue(put_timeout_s=5.0)
    assert queue.put("q", "first", b"x")
    [old] = kept_connections(kept_of(queue))
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.client_kill_filter(_id=old_client_id(old)) == 1
    monkeypatch.setattr(redis_connection, "_STALE_AFTER_S", 3600.0)
    # When it puts a job
    stored = queue.put("q", "second", b"x", new_ids=True)
    # Then the failed attempt disconnected it, and the retry reconnected and stored the job once
    assert stored is True
    assert queue.depth("q") == 2


def test_a_forked_child_takes_its_own_connection(make_queue: MakeQueue) -> None:
    # Given a queue with a kept connection, seen from a forked child (a pid not its maker's)
    queue = make_queue()
    assert queue.put("q", "first", b"x")
    kept = kept_of(queue)
    [parents] = kept_connections(kept)
    kept._pid = os.getpid() + 1
    # When the "child" puts a job
    assert queue.put("q", "second", b"x")
    # Then it put through a new connection, and the parent's is no longer kept
    [used] = kept_connections(kept)
    assert used is not parents


def test_threads_putting_at_once_each_get_a_connection(make_queue: MakeQueue) -> None:
    # Given a queue and four threads
    queue = make_queue()
    ids = [[f"t{thread}-{n}" for n in range(50)] for thread in range(4)]
    flags: list[bool] = []
    start = threading.Barrier(4)

    def put_all(mine: list[str]) -> None:
        start.wait(10)
        flags.extend(queue.put("q", job_id, b"x") for job_id in mine)

    threads = [threading.Thread(target=put_all, args=(mine,)) for mine in ids]
    # When they put 50 jobs each at the same time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then every job is stored once, and no more connections are kept than threads put
    assert flags == [True] * 200
    assert queue.depth("q") == 200
    assert 1 <= len(kept_connections(kept_of(queue))) <= 4


def test_close_disconnects_the_kept_connection(make_queue: MakeQueue) -> None:
    # Given a queue that put a job
    queue = make_queue()
    assert queue.put("q", "first", b"x")
    [kept] = kept_connections(kept_of(queue))
    # When it is closed
    queue.close()
    # Then its kept connection is closed too
    assert kept._sock is None
