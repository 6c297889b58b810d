"""``RemoteFleet``: the ``FleetControl`` of a ``conveyor run``, from another process.

Each call is one request on the run's control socket (``consumer.control_socket`` describes
the socket, where it is, and the wire). The run's answers come back as the same records; its
refusals as the same errors (``ValueError`` for a count ``set_desired`` refuses, ``ConfigError``
for a bad name); a run that does not answer is ``BackendUnavailableError``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from consumer.control_socket import TIMEOUT_S, decode, encode, read_line
from services.errors import BackendUnavailableError, ConfigError, ConveyorError
from services.protocol import AutoscaleSettings, DesiredState, PauseState, SupervisorRecord


class RemoteFleet:
    """A ``FleetControl`` on the control socket of a ``conveyor run``: each call one request."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        kwargs = {key: encode(value) for key, value in kwargs.items()}
        request = {"call": name, "args": encode(list(args)), "kwargs": kwargs}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT_S)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                reply = json.loads(read_line(sock))
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(
                f"the `conveyor run` at {self.path} did not answer: {exc}"
            ) from None
        if reply.get("ok"):
            return decode(reply.get("value"))
        error, message = reply.get("error"), str(reply.get("message", ""))
        if error == "ValueError":
            raise ValueError(message)
        if error in ("ConfigError", "InvalidNameError"):
            raise ConfigError(message)
        raise ConveyorError(f"the run refused {name}: {message}")

    def beat(self, record: SupervisorRecord, ttl_s: float) -> None:
        self._call("beat", record, ttl_s)

    def leave(self, supervisor_id: str) -> None:
        self._call("leave", supervisor_id)

    def supervisors(self) -> list[SupervisorRecord]:
        found: list[SupervisorRecord] = self._call("supervisors")
        return found

    def set_desired(
        self,
        group: str,
        processes: int,
        *,
        set_by: str,
        autoscale: AutoscaleSettings | None = None,
        reason: str = "",
        if_version: int | None = None,
    ) -> DesiredState | None:
        state: DesiredState | None = self._call(
            "set_desired", group, processes, set_by=set_by, autoscale=autoscale,
            reason=reason, if_version=if_version,
        )  # fmt: skip
        return state

    def desired(self, group: str) -> DesiredState | None:
        state: DesiredState | None = self._call("desired", group)
        return state

    def groups(self) -> list[str]:
        names: list[str] = self._call("groups")
        return names

    def pause(self, queue: str, *, set_by: str = "") -> bool:
        return bool(self._call("pause", queue, set_by=set_by))

    def resume(self, queue: str) -> bool:
        return bool(self._call("resume", queue))

    def paused(self) -> set[str]:
        names: set[str] = self._call("paused")
        return names

    def pauses(self) -> list[PauseState]:
        found: list[PauseState] = self._call("pauses")
        return found

    def revision(self) -> int:
        return int(self._call("revision"))

    def close(self) -> None:
        """Nothing to release: each call has a connection of its own."""
