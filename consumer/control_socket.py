"""The control socket of a ``conveyor run``: its fleet state, reached from other processes.

A ``memory://`` queue and its fleet state live inside one ``conveyor run``; ``conveyor scale``,
``pause`` and ``resume`` run in other processes. So the run serves its ``FleetControl`` on a
Unix socket (``ControlServer``, one thread), and those commands use ``RemoteFleet``
(``consumer.remote_fleet``), a ``FleetControl`` whose every call is one request on it::

    conveyor scale default=4 --url memory://
      RemoteFleet.set_desired --one JSON line--> run-<pid>.sock --> ControlServer thread
                              <--one JSON line--                    MemoryFleet.set_desired
    the run's supervisor: its next reconcile turn sees the revision move, resizes

**Where.** ``<dir>/run-<pid>.sock``; ``<dir>`` is ``$XDG_RUNTIME_DIR/conveyor``, or else
``/tmp/conveyor-<uid>`` (``control_dir``), made 0700 and refused unless it is the user's own;
the socket is 0600, so only the user who started the run reaches it. ``conveyor run`` prints
the path; the commands find the user's one live run there (``find_run``; ``--run PID`` picks
one of several).

**Wire.** One connection per call. The client sends one line of JSON, ``{"call": <method>,
"args": [...], "kwargs": {...}}``, and the server answers one line: ``{"ok": true, "value":
...}`` or ``{"ok": false, "error": "ValueError", "message": "..."}``. Records travel as
``{"type": "DesiredState", "fields": {...}}``, sets as ``{"set": [...]}`` (``encode``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from services.errors import BackendUnavailableError, ConfigError, ConveyorError
from services.protocol import (
    AutoscaleSettings,
    DesiredState,
    FleetControl,
    PauseState,
    SupervisorRecord,
)

log = logging.getLogger("conveyor.control")

CALLS = frozenset(
    {"beat", "leave", "supervisors", "set_desired", "desired", "groups"}
    | {"pause", "resume", "paused", "pauses", "revision"}
)
"""The ``FleetControl`` methods the socket serves: all of them."""
_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (SupervisorRecord, DesiredState, PauseState, AutoscaleSettings)
}
_MAX_LINE = 1 << 20
TIMEOUT_S = 5.0
"""How long either side waits for the other's line."""
_ACCEPT_POLL_S = 0.2


def control_dir(runtime_dir: str | None) -> Path:
    """Where runs put their sockets: ``<runtime_dir>/conveyor``, else ``/tmp/conveyor-<uid>``."""
    if runtime_dir:
        return Path(runtime_dir) / "conveyor"
    # Not tempfile.gettempdir(): $TMPDIR may differ between the run and the command.
    return Path("/tmp") / f"conveyor-{os.getuid()}"


def socket_path(directory: Path, pid: int) -> Path:
    """The socket of the run with process id ``pid``."""
    return directory / f"run-{pid}.sock"


def find_run(directory: Path, pid: int | None = None) -> Path:
    """The socket of run ``pid``, or of the one live run in ``directory``.

    Raises:
        BackendUnavailableError: no live run there (or not run ``pid``).
        ConfigError: several runs, and no ``pid`` to pick one.
    """
    if pid is not None:
        path = socket_path(directory, pid)
        if not path.exists():
            raise BackendUnavailableError(f"no `conveyor run` with pid {pid} has a socket {path}")
        return path
    live = sorted(_live_runs(directory).items())
    if not live:
        raise BackendUnavailableError(
            f"no `conveyor run` of this user is running (no control socket in {directory})"
        )
    if len(live) > 1:
        pids = ", ".join(str(p) for p, _ in live)
        raise ConfigError(f"several runs have control sockets (pids {pids}): pick one with --run")
    return live[0][1]


def _live_runs(directory: Path) -> dict[int, Path]:
    found = {}
    for path in directory.glob("run-*.sock"):
        pid = path.stem.removeprefix("run-")
        if pid.isdigit() and _alive(int(pid)):
            found[int(pid)] = path
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_dir(directory: Path) -> Path:
    """``directory``, made 0700 if missing; ConfigError unless only this user can enter it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = directory.stat()
    if found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise ConfigError(
            f"{directory} must belong to this user and be closed to others (chmod 700): "
            "the control socket of a run lives there"
        )
    return directory


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data (records tagged by type, sets marked)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, "fields": fields}
    if isinstance(value, set | frozenset):
        return {"set": sorted(value)}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value: Any) -> Any:
    """The value ``encode`` made ``value`` from."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "set" in value:
        return set(value["set"])
    cls = _TYPES[value["type"]]
    fields = {name: decode(item) for name, item in value["fields"].items()}
    if cls is SupervisorRecord:
        fields["queues"] = tuple(fields.get("queues", ()))
    return cls(**fields)


class ControlServer:
    """Serves ``fleet`` on a Unix socket at ``path`` from one thread, until ``close``."""

    def __init__(self, fleet: FleetControl, path: Path) -> None:
        self._fleet = fleet
        self.path = path
        self._closed = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind (a stale socket of a dead process with our pid is replaced) and serve."""
        private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))  # OSError for a path too long for a Unix socket, too
            # 0600 (the directory, 0700, already keeps others out; no umask games: the
            # process has other threads)
            self.path.chmod(0o600)
            sock.listen(8)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(_ACCEPT_POLL_S)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="conveyor-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and remove the socket."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _ACCEPT_POLL_S + TIMEOUT_S)
        if self._sock is not None:
            self._sock.close()
            self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT_S)
                try:
                    request = read_line(conn)
                    conn.sendall(json.dumps(self.answer(request)).encode() + b"\n")
                except (OSError, ValueError) as exc:
                    log.warning("control socket: a request failed: %s", exc)

    def answer(self, request: bytes) -> dict[str, Any]:
        """The reply to one request line (a bad request is answered, never raised)."""
        try:
            call = json.loads(request)
            name = call["call"]
            if name not in CALLS:
                raise ConfigError(f"the control socket serves no call {name!r}")
            args = decode(call.get("args", []))
            kwargs = {key: decode(value) for key, value in call.get("kwargs", {}).items()}
            value = getattr(self._fleet, name)(*args, **kwargs)
        except (ConveyorError, ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        return {"ok": True, "value": encode(value)}


def read_line(conn: socket.socket) -> bytes:
    """One line from ``conn`` (the whole message: one line each way)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_LINE:
            raise ValueError("request too long")
    return data
