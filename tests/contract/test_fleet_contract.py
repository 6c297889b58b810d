"""The fleet contract (``services.testing.contract.test_fleet``) on memory and on a real
redis-server, plus what only Redis can show: the state outlives the connection that wrote it and
a restart of the server with persistence.

The backends do not implement ``FleetControl`` themselves (yet), so this module provides the
suite's ``open_fleet`` fixture: a ``MemoryFleet`` next to ``memory://``, a ``RedisFleet`` on the
database of the redis backend under test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.backends.memory.fleet import MemoryFleet
from services.backends.redis.fleet import RedisFleet
from services.protocol.fleet import FleetControl, SupervisorRecord
from services.testing.contract.subject import BackendUnderTest
from services.testing.contract.test_fleet import *  # noqa: F403
from services.testing.contract.test_fleet import OpenFleet
from tests.redis_fixtures import RedisServer


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
