"""The control socket of ``conveyor run``: ``RemoteFleet`` over a ``ControlServer`` passes the
whole fleet contract (``services.testing.contract.test_fleet``) on a ``MemoryFleet``; the
socket lives in a private directory, and the commands find the one live run there."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.control_socket import ControlServer, control_dir, find_run, private_dir, socket_path
from consumer.remote_fleet import RemoteFleet
from services.backends.memory.fleet import MemoryFleet
from services.errors import BackendUnavailableError, ConfigError
from services.protocol import AutoscaleSettings, FleetControl
from services.testing.contract.test_fleet import *  # noqa: F403


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (a Unix socket path has at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cv-", dir="/tmp") as found:
        yield Path(found) / "conveyor"


# The contract suite's fixture, replaced: its tests run on a RemoteFleet over the socket.
@pytest.fixture  # type: ignore[no-redef]
def fleet(short_dir: Path) -> Iterator[FleetControl]:
    with ControlServer(MemoryFleet(), socket_path(short_dir, os.getpid())) as server:
        yield RemoteFleet(server.path)


def test_remote_calls_bring_back_the_same_records_and_errors(short_dir: Path) -> None:
    # Given a run's fleet served on its socket
    local = MemoryFleet()
    with ControlServer(local, socket_path(short_dir, os.getpid())) as server:
        remote = RemoteFleet(server.path)
        bounds = AutoscaleSettings(1, 4, 10, stabilization_s=2.0)
        # When a command sets an autoscaled state through it
        state = remote.set_desired("g", 2, set_by="alice@h", autoscale=bounds, reason="r")
        # Then it is the run's state, record for record; a refused count is the same ValueError
        assert state == local.desired("g") and state is not None and state.autoscale == bounds
        with pytest.raises(ValueError, match="bounds"):
            remote.set_desired("g", 9, set_by="x", autoscale=bounds)
    # And once the run is gone, the socket is too, and a call says the run does not answer
    assert not server.path.exists()
    with pytest.raises(BackendUnavailableError, match="did not answer"):
        remote.revision()


def test_the_server_answers_bad_requests_and_serves_fleet_calls_only(short_dir: Path) -> None:
    with ControlServer(MemoryFleet(), socket_path(short_dir, os.getpid())) as server:
        for request, error in (
            (b"not json\n", "JSONDecodeError"),
            (b'{"call": "close"}\n', "ConfigError"),
            (b'{"call": "set_desired", "args": ["g"]}\n', "TypeError"),
        ):
            reply = _exchange(server.path, request)
            assert reply["ok"] is False and reply["error"] == error, reply
        assert _exchange(server.path, b'{"call": "revision"}\n') == {"ok": True, "value": 0}


def _exchange(path: Path, request: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(request)
        reply: dict[str, object] = json.loads(sock.makefile("rb").readline())
        return reply


def test_the_socket_and_its_directory_are_the_users_alone(short_dir: Path) -> None:
    with ControlServer(MemoryFleet(), socket_path(short_dir, os.getpid())) as server:
        assert server.path.stat().st_mode & 0o777 == 0o600
        assert short_dir.stat().st_mode & 0o777 == 0o700
    # A directory others may enter is refused
    short_dir.chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        private_dir(short_dir)


def test_find_run_picks_the_one_live_run(short_dir: Path) -> None:
    # Given no run / Then the command says none runs
    private_dir(short_dir)
    with pytest.raises(BackendUnavailableError, match="no `conveyor run`"):
        find_run(short_dir)
    # Given a stale socket of a process that is gone, and one live run (this process)
    socket_path(short_dir, _gone_pid()).touch()
    with ControlServer(MemoryFleet(), socket_path(short_dir, os.getpid())) as server:
        # Then the live one is found, by itself or by its pid
        assert find_run(short_dir) == server.path == find_run(short_dir, os.getpid())
        # And with a second live run, the command must be told which
        socket_path(short_dir, os.getppid()).touch()
        with pytest.raises(ConfigError, match="pick one with --run"):
            find_run(short_dir)


def test_the_directory_follows_xdg_runtime_dir() -> None:
    assert control_dir("/run/user/1000") == Path("/run/user/1000/conveyor")
    assert control_dir(None) == Path(f"/tmp/conveyor-{os.getuid()}")


def _gone_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1
