"""The server matrix CI runs on (``tests.server_builds``): each build is installed, starts with
the fixture's options, and is the server its name promises, as the server itself reports it;
``CONVEYOR_REDIS_SERVER`` takes a build's name or a path, and a missing build is an error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import server_builds
from tests.redis_fixtures import RedisServer, documented_acl, find_redis_server, setinfo_rules


@pytest.fixture(params=sorted(server_builds.BUILDS))
def build_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of one build (``request.param``), not yet started; killed after the test."""
    server = RedisServer(server_builds.resolve(request.param), tmp_path)
    yield server
    server.kill()


@contextlib.contextmanager
def _client(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port, socket_timeout=5.0, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _identity(info: dict[str, str]) -> tuple[str, str]:
    # Valkey's redis_version is the Redis version it is compatible with (7.2.4); its own
    # name and number are in server_name and valkey_version.
    if info.get("server_name") == "valkey":
        return "valkey", info["valkey_version"]
    return "redis", info["redis_version"]


@pytest.mark.redis
def test_each_build_is_the_server_its_name_promises(
    build_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    # Given one build of the matrix (debian: Redis 7.x, redis62: Redis 6.2.x, valkey: Valkey)
    build = server_builds.BUILDS[request.node.callspec.params["build_server"]]
    # When it runs with the fixture's default options
    build_server.start()
    # Then the running server reports that family and version in INFO server
    with _client(build_server) as client:
        family, number = _identity(client.info("server"))
    assert family == build.family
    assert number.startswith(build.prefix)


@pytest.mark.redis
def test_each_build_accepts_the_persistence_options(build_server: RedisServer) -> None:
    # When a build starts the way the fault and integrity tests start it (AOF, fsync always)
    build_server.start(persistent=True, extra_args=["--appendfsync", "always"])
    # Then it runs with those settings
    with _client(build_server) as client:
        settings = client.config_get("append*")
    assert (settings["appendonly"], settings["appendfsync"]) == ("yes", "always")


@pytest.mark.redis
def test_the_documented_acl_user_connects_undenied_on_each_build(
    build_server: RedisServer,
) -> None:
    # Given a user made from the backend's documented ACL line, plus this build's setinfo rule
    build_server.start()
    name, rules = documented_acl("pw")
    with _client(build_server) as admin:
        admin.execute_command("ACL", "SETUSER", name, *rules, *setinfo_rules(admin))  # type: ignore[no-untyped-call]
        admin.acl_log_reset()
        # When it connects the way the backend does (RESP2, redis-py's CLIENT SETINFO on connect)
        user = redis.Redis(port=build_server.port, username=name, password="pw", protocol=2)
        try:
            assert user.ping()
        finally:
            user.close()
        # Then the server refused it nothing
        assert admin.acl_log() == []


def test_the_override_takes_a_build_name_or_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given CONVEYOR_REDIS_SERVER set to a build's name, then to a path
    monkeypatch.setenv("CONVEYOR_REDIS_SERVER", "valkey")
    by_name = find_redis_server()
    monkeypatch.setenv("CONVEYOR_REDIS_SERVER", "/opt/some/redis-server")
    by_path = find_redis_server()
    # Then the name is that build's binary and the path is taken as it is
    assert by_name == server_builds.resolve("valkey")
    assert by_name is not None and by_name.endswith("/valkey-server")
    assert by_path == "/opt/some/redis-server"


def test_a_named_build_that_is_missing_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a PATH without redis-server
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CONVEYOR_REDIS_SERVER", "debian")
    # Then asking for the debian build raises, naming where it should come from
    with pytest.raises(server_builds.BuildMissing, match="redis-server on PATH"):
        find_redis_server()


def test_a_build_of_another_version_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a redis-server on PATH that says it is Redis 5.0
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=5.0.14 sha=00000000:0 bits=64'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    # Then the debian build (Redis 7.x) is refused, with the version found
    with pytest.raises(server_builds.BuildMissing, match=r"Redis 5\.0\.14, expected Redis 7\.x"):
        server_builds.resolve("debian")
