"""The fleet contract (``services.testing.contract.test_fleet``) on memory and on a real
redis-server, plus what only Redis can show: the state outlives the connection that wrote it and
a restart of the server with persistence.

The backends do not implement ``FleetControl`` themselves (yet), so this module provides the
suite's ``open_fleet`` fixture: a ``MemoryFleet`` next to ``memory://``, a ``RedisFleet`` on the
database of the redis backend under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from services.backends.memory.fleet import MemoryFleet
from services.backends.redis.fleet import RedisFleet
from services.protocol.fleet import FleetControl, SupervisorRecord
from services.testing.contract.subject import BackendUnderTest
from services.testing.contract.test_fleet import *  # noqa: F403
from services.testing.contract.test_fleet import OpenFleet
from tests.redis_fixtures import RedisServer, documented_acl


@pytest.fixture
def open_fleet(request: pytest.FixtureRequest) -> Iterator[OpenFleet]:
    opened: list[RedisFleet] = []

    def open_for(backend: BackendUnderTest) -> FleetControl:
        if backend.name == "memory":
            return MemoryFleet()
        opened.append(RedisFleet.open(request.getfixturevalue("redis_url")))
        return opened[-1]

    yield open_for
    for store in opened:
        store.close()


def test_both_stores_are_fleet_controls() -> None:
    assert isinstance(MemoryFleet(), FleetControl)
    store = RedisFleet.open("redis://127.0.0.1:1/0")  # never connects: nothing is called
    assert isinstance(store, FleetControl)
    store.close()


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
