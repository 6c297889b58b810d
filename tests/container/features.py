"""What the code under test can do today, asked of the checkout's own ``conveyor`` (the image
is built from the same tree): ``conveyor serve`` and ``conveyor worker --metrics-port`` are
being written while this test already runs.

Until ``serve`` exists the stack starts without its ``producer`` service and jobs go in through
the Python API inside a consumer container (``tests.container.client``); until
``--metrics-port`` exists an override file drops that flag from the consumer's command. Both
fallbacks switch themselves off once the feature is there; then this module can go.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers_process import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"


def _conveyor_help(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def serve_exists() -> bool:
    """``conveyor serve`` is a command of this checkout."""
    return _conveyor_help("serve").returncode == 0


def worker_has_metrics_port() -> bool:
    """``conveyor worker`` takes ``--metrics-port``."""
    return "--metrics-port" in _conveyor_help("worker").stdout


def services_to_start() -> list[str]:
    """The compose services the test brings up (the demo profile is run on its own)."""
    return ["redis", "consumer", *(["producer"] if serve_exists() else [])]


def compose_files(scratch: Path) -> list[Path]:
    """``docker-compose.yml``, plus an override written to ``scratch`` while the worker does
    not take ``--metrics-port`` yet (JSON is YAML, so no YAML library is needed)."""
    if worker_has_metrics_port():
        return [COMPOSE_FILE]
    override = scratch / "no-metrics-port.yml"
    command = [arg for arg in _consumer_command() if arg not in ("--metrics-port", "9100")]
    override.write_text(json.dumps({"services": {"consumer": {"command": command}}}))
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
