"""The contract suite is a package an outside backend can run: ``pytest --pyargs`` plus a plugin
that provides the ``backend`` fixture, with nothing of this repository's test setup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONTRACT_TESTS = 88
"""Tests in ``services.testing.contract`` (``tests/contract`` runs each on two backends)."""


def test_an_outside_project_runs_the_suite_with_a_plugin_of_its_own(tmp_path: Path) -> None:
    # Given a project outside this tree: its own ini file, and a plugin providing ``backend``
    # (here on memory://, written as the package docstring shows)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "outside_backend.py").write_text(
        "import pytest\n"
        "from services.backends import open_queue\n"
        "from services.testing.contract import CONTRACT_SETTINGS, BackendUnderTest\n\n"
        "@pytest.fixture\n"
        "def backend():\n"
        "    subject = BackendUnderTest('outside', open_queue('memory://', CONTRACT_SETTINGS))\n"
        "    yield subject\n"
        "    subject.close()\n"
    )
    # When it runs the suite by package name
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "pytest.ini"]
    command += ["--pyargs", "services.testing.contract", "-p", "outside_backend"]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    # Then every contract test ran on it and passed
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary.startswith(f"{CONTRACT_TESTS} passed"), summary
