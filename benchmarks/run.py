"""Run every system through every workload, interleaved, and write one JSON file per run.

``python -m benchmarks.run [--systems a,b] [--workloads drain,io] [--jobs N] [--repeats 3]``

For each repetition, each system in turn (so machine drift falls on all alike), each workload
gets a fresh redis-server on a free port (never 6379; no persistence) and one
``benchmarks.measure`` process in a session of its own, under a hard time bound: at the bound
the whole session is killed and a timeout recorded. A warm-up round (its figures dropped)
comes first unless ``--no-warmup``. Each figure's median, minimum and maximum over the
repetitions go to ``benchmarks/results/<date>.json`` with the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.measure import WORKLOADS
from benchmarks.peers import PEERS
from consumer.cli.bench_server import throwaway_server

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("conveyor", "rq", "celery", "dramatiq", "huey", "arq", "saq", "redis")
Figures = dict[str, float]


def measure_once(args: argparse.Namespace, peer: str, workload: str) -> Figures | str:
    """One ``benchmarks.measure`` run on a fresh server (``conveyor bench``'s throwaway
    redis-server): its figures, or why it has none."""
    with throwaway_server(args.redis_server) as url:
        out, err, code = _measure(args, peer, workload, url)
    if code != 0 or not out.strip():
        return (err.strip().splitlines() or ["failed"])[-1]
    figures: Figures = json.loads(out.strip().splitlines()[-1])
    return figures


def _measure(args: argparse.Namespace, peer: str, workload: str, url: str) -> tuple[str, str, int]:
    """Run the measure process against ``url`` within the bound: its output and exit code."""
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "benchmarks.measure", peer, workload]
    command += ["--jobs", str(args.latency_jobs if workload == "latency" else args.jobs)]
    child = subprocess.Popen(
        [*command, "--rate", str(args.rate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        _kill_session(child.pid)
        child.communicate()  # reads what is left and closes the pipes
        out, err = "", f"timeout after {args.timeout:g} s"
    finally:
        _kill_session(child.pid)
        child.wait()
    return out, err, child.returncode


def _kill_session(pid: int) -> None:
    # The workers the measure process started share its session: none may outlive the run.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def summarise(runs: list[Figures]) -> dict[str, dict[str, Any]]:
    names = sorted({name for run in runs for name in run})
    summary = {}
    for name in names:
        values = [run[name] for run in runs if name in run]
        summary[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": values,
        }
    return summary


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    cases = [(peer, workload) for peer in args.systems for workload in args.workloads]
    if "enqueue" in args.workloads:
        cases.append(("bare", "enqueue"))
    return cases


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = context(args)  # the commit and versions measured, before anything changes them
    cases, problems = plan(args), []
    found: dict[tuple[str, str], list[Figures]] = {case: [] for case in cases}
    rounds = ([0] if args.warmup else []) + list(range(1, args.repeats + 1))
    for repetition in rounds:
        for peer, workload in cases:
            result = measure_once(args, peer, workload)
            label = "warm-up" if repetition == 0 else f"run {repetition}"
            print(f"{label:8} {peer:20} {workload:8} {result}", file=sys.stderr, flush=True)
            if isinstance(result, str):
                problems.append({"system": peer, "workload": workload, "error": result})
            elif repetition:
                found[(peer, workload)].append(result)
    results: dict[str, dict[str, Any]] = {}
    for (peer, workload), runs in found.items():
        results.setdefault(peer, {})[workload] = summarise(runs)
    return {**started, "results": results, "problems": problems}


def context(args: argparse.Namespace) -> dict[str, Any]:
    """When, where, with what: the date, machine, versions, commit, settings."""
    versions = {"python": platform.python_version(), "redis-server": _server_version(args)}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": _cpu()},
        "versions": versions,
        "commit": commit,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "configurations": {peer: PEERS[peer].note for peer in args.systems},
    }


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def _server_version(args: argparse.Namespace) -> str:
    version_of = [args.redis_server, "--version"]
    out = subprocess.run(version_of, capture_output=True, text=True, check=False).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(PEERS), help="comma-separated")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per drain/io/enqueue run")
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0, help="latency: offered jobs/s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement")
    parser.add_argument("--redis-server", default="redis-server")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = [s for s in args.systems if s not in PEERS] + [
        w for w in args.workloads if w not in WORKLOADS
    ]
    if unknown:
        parser.error(f"unknown system or workload: {', '.join(unknown)}")
    return args


def _stop(signum: int, frame: object) -> None:
    # SIGTERM as Ctrl+C: the running measurement's session and server are cleaned up on the
    # way out (``measure_once``'s ``finally``).
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    document = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path: Path = args.out / f"{str(document['date']).replace(':', '')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(path)
    return path


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)  # here, not in main(): tests call main()
    main()
