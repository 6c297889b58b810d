"""The fleet contract (``services.testing.contract.test_fleet``) on memory and on a real
redis-server (each backend's ``fleet()``), plus what only Redis can show: the state outlives the
connection that wrote it and a restart of the server with persistence, under the documented ACL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis

from services.backends import open_queue
from services.backends.memory.fleet import MemoryFleet
from services.backends.redis.fleet import RedisFleet
from services.errors import ConfigError
from services.protocol.fleet import FleetControl, SupervisorRecord
from services.testing.contract.test_fleet import *  # noqa: F403
from tests.redis_fixtures import RedisServer, documented_acl, setinfo_rules


def test_both_stores_are_fleet_controls() -> None:
    assert isinstance(MemoryFleet(), FleetControl)
    store = RedisFleet.open("redis://127.0.0.1:1/0")  # never connects: nothing is called
    assert isinstance(store, FleetControl)
    store.close()


@pytest.mark.redis
def test_each_backend_hands_out_one_fleet_on_its_own_clients(redis_url: str) -> None:
    # Given a root connection to each backend
    for url, kind in (("memory://", MemoryFleet), (redis_url, RedisFleet)):
        backend = open_queue(url)
        try:
            # When its fleet is asked for twice / Then it is the same store, of that backend
            store = backend.fleet()
            assert isinstance(store, kind) and backend.fleet() is store
            store.set_desired("g", 2, set_by="x")
            assert backend.fleet().desired("g") is not None
        finally:
            backend.close()


def test_a_memory_consumer_channel_has_no_fleet() -> None:
    # Given a memory backend and a consumer opened the way a child process opens it
    backend = open_queue("memory://")
    consumer = backend.connector("c1").open()
    try:
        # Then only the root holds the fleet: the child is told where it lives
        with pytest.raises(ConfigError, match="root process"):
            consumer.fleet()
    finally:
        consumer.close()
        backend.close()


@pytest.mark.redis
def test_redis_fleet_state_outlives_its_connection_and_a_server_restart(
    redis_server: RedisServer, redis_url: str
) -> None:
    # Given a server with persistence, and a fleet state written through one connection
    redis_server.kill()
    redis_server.start(persistent=True)
    writer = RedisFleet.open(redis_url)
    writer.set_desired("g", 6, set_by="alice")
    writer.pause("emails", set_by="alice")
    writer.beat(SupervisorRecord("s1", "g", 4), 600.0)
    revision = writer.revision()
    writer.close()
    # When Redis restarts (SIGTERM: it writes the AOF out) and a new connection reads
    assert redis_server.proc is not None
    redis_server.proc.terminate()
    redis_server.proc.wait(timeout=10)
    redis_server.proc = None
    redis_server.start(persistent=True)
    reader = RedisFleet.open(redis_url)
    try:
        # Then the desired state, the pause, the supervisor and the revision are all there
        desired = reader.desired("g")
        assert desired is not None and (desired.processes, desired.version) == (6, 1)
        assert reader.paused() == {"emails"}
        assert [r.id for r in reader.supervisors()] == ["s1"]
        assert reader.revision() == revision
    finally:
        reader.close()


@pytest.mark.redis
def test_redis_fleet_needs_no_command_beyond_the_documented_acl(redis_url: str) -> None:
    # Given a user made from the ACL line of the Redis backend's docstring
    admin = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    name, rules = documented_acl("fleet-pw")
    rules += setinfo_rules(admin)  # the docstring's note for Redis 6.2 and 7.2 and later
    admin.execute_command("ACL", "SETUSER", name, *rules)  # type: ignore[no-untyped-call]
    admin.execute_command("ACL", "LOG", "RESET")  # type: ignore[no-untyped-call]
    parts = urlsplit(redis_url)
    store = RedisFleet.open(f"redis://{name}:fleet-pw@{parts.hostname}:{parts.port}{parts.path}")
    try:
        # When it does every fleet operation, the scripts loaded afresh (as after a restart)
        admin.script_flush()
        store.beat(SupervisorRecord("s1", "g", 4), 30.0)
        store.set_desired("g", 2, set_by="x", if_version=0)
        store.pause("q")
        listed, desired, groups = store.supervisors(), store.desired("g"), store.groups()
        paused, pauses, revision = store.paused(), store.pauses(), store.revision()
        resumed = store.resume("q")
        store.leave("s1")
        # Then all of it worked, and Redis denied the user nothing
        assert [r.id for r in listed] == ["s1"] and groups == ["g"] and desired is not None
        assert paused == {"q"} and len(pauses) == 1 and revision == 3 and resumed
        assert store.supervisors() == []
        assert admin.execute_command("ACL", "LOG") == []  # type: ignore[no-untyped-call]
    finally:
        store.close()
        admin.close()
