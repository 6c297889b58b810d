"""One compose project on the private engine: ``docker-compose -p NAME -f docker-compose.yml``
with ``REDIS_IMAGE`` and ``CONVEYOR_IMAGE`` pointing at local images, never building or
pulling (``--no-build``; there is no registry to pull from).

docker-compose 1.29 runs it by default; ``CONVEYOR_COMPOSE="docker compose"`` (or the path of
a compose v2 binary) runs the same test with compose v2. Containers are read with ``docker
inspect`` through the labels compose puts on them, which both versions set alike.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.container.engine import DockerEngine, EngineError, run_checked, wait_until
from tests.helpers_process import ROOT

_COMPOSE_DEADLINE_S = 300.0
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = ("redis", "producer", "consumer")
"""The services the tests bring up; ``demo`` is a profile, run on its own."""


def compose_command() -> list[str]:
    """The compose program: docker-compose 1.29 unless ``CONVEYOR_COMPOSE`` names another."""
    return shlex.split(os.environ.get("CONVEYOR_COMPOSE", "docker-compose"))


@dataclass(frozen=True)
class Container:
    """One container of the project, as ``docker inspect`` saw it."""

    service: str
    status: str
    """created, running, exited, ..."""
    health: str | None
    """healthy, starting, unhealthy; None without a healthcheck."""
    exit_code: int
    restarts: int
    """Restarts by the restart policy since the last start: a crash loop shows here."""

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in (None, "healthy") and not self.restarts

    @classmethod
    def from_inspect(cls, found: dict[str, Any]) -> Container:
        state = found["State"]
        health = state.get("Health")
        return cls(
            service=found["Config"]["Labels"]["com.docker.compose.service"],
            status=state["Status"],
            health=health["Status"] if health else None,
            exit_code=state["ExitCode"],
            restarts=found["RestartCount"],
        )


class ComposeStack:
    """``docker-compose -p project -f files...`` on ``engine`` with ``variables`` set."""

    def __init__(
        self,
        engine: DockerEngine,
        *,
        project: str,
        files: Sequence[Path],
        variables: dict[str, str],
    ) -> None:
        self.engine = engine
        self.project = project
        self._files = list(files)
        self._variables = variables

    def compose(
        self, *args: str, timeout_s: float = _COMPOSE_DEADLINE_S, check: bool = True
    ) -> str:
        """Run one compose command; its output, or EngineError with it."""
        files = [arg for path in self._files for arg in ("-f", str(path))]
        done = run_checked(
            [*compose_command(), "-p", self.project, *files, *args],
            env={**self.engine.env(), **self._variables},
            timeout_s=timeout_s,
            check=check,
        )
        return done.stdout

    def up(self, *, consumers: int, deadline_s: float = 180.0) -> None:
        """Create or start ``SERVICES`` with ``consumers`` consumer containers; return once
        every one runs, is healthy and has not restarted since (a crash loop never is ready)."""
        self.compose("up", "-d", "--no-build", "--scale", f"consumer={consumers}", *SERVICES)

        def ready() -> bool:
            found = [each for each in self.containers() if each.service in SERVICES]
            return (
                all(each.ready for each in found)
                and {each.service for each in found} == set(SERVICES)
                and len([each for each in found if each.service == "consumer"]) == consumers
            )

        try:
            wait_until(ready, deadline_s=deadline_s, what="the stack to be ready")
        except EngineError as error:
            raise EngineError(f"{error}\n{self.containers()}\n{self.logs()}") from None

    def containers(self) -> list[Container]:
        """Every container of the project, running or not."""
        label = f"label=com.docker.compose.project={self.project}"
        ids = self.engine.docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
        if not ids:
            return []
        found = json.loads(self.engine.docker("inspect", *ids).stdout)
        return [Container.from_inspect(each) for each in found]

    def exec(self, service: str, *command: str) -> str:
        """Run ``command`` in the first container of ``service``; its output."""
        return self.compose("exec", "-T", service, *command, timeout_s=120)

    def stop(self) -> None:
        """``stop``: SIGTERM to every container, dependents first, SIGKILL only after each
        service's stop_grace_period."""
        self.compose("stop")

    def logs(self, tail: int = 60) -> str:
        """The last lines of every container's output, for a failure message."""
        return self.compose("logs", "--no-color", f"--tail={tail}", check=False)

    def down(self) -> None:
        """Remove the containers, the network and the named volumes."""
        self.compose("down", "--volumes", "--remove-orphans")


MakeStack = Callable[..., ComposeStack]
"""The ``make_stack`` fixture: ``make_stack(*extra_files, **variables)`` is a project on the
test images, taken down (with its volumes) after the test."""
