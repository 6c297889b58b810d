"""What the code under test can do today, asked of the Conveyor image the test built:
``conveyor serve`` and ``conveyor worker --metrics-port`` are being written while this test
already runs (and the checkout may change under a running test; the image does not).

Until ``serve`` exists the stack starts without its ``producer`` service and jobs go in through
the Python API inside a consumer container (``tests.container.client``); until
``--metrics-port`` exists an override file drops the metrics flags (and the healthcheck that
scrapes the port) from the consumer. Both fallbacks switch themselves off once the feature is in
the image; then this module can go.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.container.engine import DockerEngine
from tests.helpers_process import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"

_PROBE = "conveyor serve --help >/dev/null 2>&1 && echo SERVE-EXISTS; conveyor worker --help"


@dataclass(frozen=True)
class Features:
    """Which of the stack's commands the image knows."""

    serve: bool
    metrics_port: bool

    @classmethod
    def of_image(cls, engine: DockerEngine, image: str) -> Features:
        """Ask ``image`` itself, in one throwaway container."""
        out = engine.docker("run", "--rm", image, "sh", "-c", _PROBE).stdout
        return cls(serve="SERVE-EXISTS" in out, metrics_port="--metrics-port" in out)

    def services(self) -> list[str]:
        """The compose services the test brings up (the demo profile is run on its own)."""
        return ["redis", "consumer", *(["producer"] if self.serve else [])]

    def compose_files(self, scratch: Path) -> list[Path]:
        """``docker-compose.yml``, plus an override written to ``scratch`` while the worker
        does not take ``--metrics-port`` (JSON is YAML: no YAML library is needed)."""
        if self.metrics_port:
            return [COMPOSE_FILE]
        override = scratch / "no-metrics-port.yml"
        command = _without_flags(_consumer_command(), "--metrics-port", "--metrics-host")
        consumer = {"command": command, "healthcheck": {"disable": True}}
        override.write_text(json.dumps({"services": {"consumer": consumer}}))
        return [COMPOSE_FILE, override]


def _consumer_command() -> list[str]:
    # The compose file writes commands as JSON-style flow lists; the consumer's is the one
    # that runs `conveyor worker`.
    found = [
        command
        for command in re.findall(r"command: (\[[^\]]*\])", COMPOSE_FILE.read_text())
        if '"worker"' in command
    ]
    assert len(found) == 1, "docker-compose.yml: expected one `conveyor worker` command"
    return list(json.loads(found[0]))


def _without_flags(command: list[str], *flags: str) -> list[str]:
    """``command`` less each of ``flags`` and the value that follows it."""
    kept: list[str] = []
    skip = False
    for arg in command:
        if arg in flags:
            skip = True
        elif skip:
            skip = False
        else:
            kept.append(arg)
    return kept
