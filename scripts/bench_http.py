"""Load-test ``conveyor serve`` next to a bare FastAPI endpoint, in the same run; prints figures.

Starts a private redis-server (the tests' ``benchmark_server``), ``conveyor serve`` on it (with
the demo registry, so every job's name and arguments are checked), and a bare endpoint: the
same framework with the same options (``producer.http.app.fastapi_options``, route on the
application's own router) run by uvicorn with the same settings (uvloop and httptools where
installed, no access log), answering a constant to the same POST. Everything is on loopback.

The clients are ``wrk`` (Debian: ``apt-get install wrk``): one C process whose threads each
drive many connections (``--connections`` over ``--threads``), with a Lua script that sets the
method, headers and body. One thread already sends well over 50,000 requests/s, so it is not
what limits these figures, and it leaves the machine's other core(s) to the server and Redis.
Each figure is the median of ``--rounds`` rounds; the three runs alternate within a round, so
a noisy neighbour hits them alike. The server's CPU time per request is printed too: on a
loaded machine it is the steadier comparison. Batches go over fewer connections
(``--batch-connections``, 4): each request already carries a thousand jobs, and more of them
at once only hold more objects alive (measured: 62k jobs/s on 4, 56k on 8, 49k on 32).

    bare     POST -> 200 {"ok":true}                              requests/s, p50, p99
    single   POST /v1/queues/bench/jobs       one job per request  requests/s, p50, p99
    batch    POST /v1/queues/bench/batches    --batch jobs each    requests/s, jobs/s, p50, p99

Targets (issue 10): single >= 50% of bare requests/s; batch >= 50,000 jobs/s.

Usage: ``.venv/bin/python scripts/bench_http.py [--seconds 10] [--rounds 3] [--connections 64]
[--threads 1] [--batch 1000] [--redis-server PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.responses import Response  # noqa: E402

from producer.http.app import fastapi_options  # noqa: E402
from tests.redis_fixtures import benchmark_server, free_port  # noqa: E402

JOB = {"job": "checksum", "args": [1000, "bench"]}


@dataclass(frozen=True)
class Figures:
    """One wrk run: requests per second, latency percentiles (ms), server CPU per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int


def bare_app() -> FastAPI:
    """The bare endpoint: FastAPI as ``conveyor serve`` configures it, one constant answer."""
    app = FastAPI(docs_url=None, redoc_url=None, **fastapi_options())

    @app.router.post("/bare")
    async def bare() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app


def run_bare_server(port: int) -> None:
    """The bare server, with the uvicorn settings of ``conveyor serve`` (``command._run``)."""
    config = uvicorn.Config(
        bare_app(),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


def start(command: list[str], port: int, probe: str, answer: bytes) -> subprocess.Popen[bytes]:
    """Start a server process; wait until ``probe`` (a POST on ``port``) gives ``answer``.

    Checking the answer, not just the port, makes sure the figures are this server's: a
    free port can be taken by another program between ``free_port`` and the server's bind.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{command[:4]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
            continue
        found = _post(f"http://127.0.0.1:{port}{probe}")
        if answer not in found:
            proc.kill()
            sys.exit(f"port {port} answers {found[:80]!r}: another program holds it; run again")
        return proc
    sys.exit(f"{command[:4]} did not listen on {port}")


def _post(url: str) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(JOB).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return bytes(error.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lua_script(folder: Path, name: str, body: bytes) -> Path:
    path = folder / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    return path


def wrk(url: str, script: Path, pid: int, args: argparse.Namespace, connections: int) -> Figures:
    """One wrk run against ``url``; the figures, with ``pid``'s CPU time per request."""
    before = cpu_seconds(pid)
    done = subprocess.run(
        [
            "wrk",
            f"-t{min(args.threads, connections)}",
            f"-c{connections}",
            f"-d{args.seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    used = cpu_seconds(pid) - before
    out = done.stdout
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad[1]) if bad else 0
    return Figures(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_latency(out, "50%"),
        p99_ms=_latency(out, "99%"),
        cpu_us=used / max(total, 1) * 1e6,
        errors=errors,
    )


def _latency(out: str, which: str) -> float:
    found = re.search(rf"{which}\s+([\d.]+)(us|ms|s)\b", out)
    if found is None:
        return float("nan")
    value, unit = float(found[1]), found[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def flush(port: int) -> None:
    client = redis.Redis(port=port)
    client.flushall()
    client.close()


def median(runs: list[Figures]) -> Figures:
    return Figures(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
        errors=sum(r.errors for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1000, help="jobs per batch request")
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=4,
        help="connections for the batch run (each request carries --batch jobs)",
    )
    parser.add_argument("--redis-server", default=None)
    parser.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server is not None:
        run_bare_server(args.bare_server)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    with benchmark_server(args.redis_server) as redis_server, tempfile.TemporaryDirectory() as tmp:
        bench(args, redis_server.url, redis_server.port, Path(tmp))


def bench(args: argparse.Namespace, url: str, redis_port: int, tmp: Path) -> None:
    serve_port, bare_port = free_port(), free_port()
    python = sys.executable
    serve = start(
        [
            *(python, "-m", "consumer", "--log-level", "WARNING", "serve", "--url", url),
            *("--port", str(serve_port), "--no-access-log", "--jobs", "services.demo:registry"),
            *("--max-batch", str(max(args.batch, 10_000))),
        ],
        serve_port,
        "/v1/queues/bench/jobs",
        b'"new":true',
    )
    bare = start(
        [python, "-m", "scripts.bench_http", "--bare-server", str(bare_port)],
        bare_port,
        "/bare",
        b'{"ok":true}',
    )
    batch_body = json.dumps({"jobs": [JOB] * args.batch}).encode()
    scripts = {
        "bare": lua_script(tmp, "bare", json.dumps(JOB).encode()),
        "single": lua_script(tmp, "single", json.dumps(JOB).encode()),
        "batch": lua_script(tmp, "batch", batch_body),
    }
    urls = {
        "bare": (f"http://127.0.0.1:{bare_port}/bare", bare.pid),
        "single": (f"http://127.0.0.1:{serve_port}/v1/queues/bench/jobs", serve.pid),
        "batch": (f"http://127.0.0.1:{serve_port}/v1/queues/bench/batches", serve.pid),
    }
    runs: dict[str, list[Figures]] = {name: [] for name in urls}
    try:
        for round_no in range(1, args.rounds + 1):
            for name, (target, pid) in urls.items():
                flush(redis_port)
                connections = args.batch_connections if name == "batch" else args.connections
                runs[name].append(wrk(target, scripts[name], pid, args, connections))
                if runs[name][-1].errors:
                    sys.exit(f"{name}: {runs[name][-1].errors} answers were not 2xx")
            print(f"round {round_no}/{args.rounds} done", file=sys.stderr)
    finally:
        for proc in (serve, bare):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    report(args, {name: median(found) for name, found in runs.items()})


def report(args: argparse.Namespace, found: dict[str, Figures]) -> None:
    bare, single, batch = found["bare"], found["single"], found["batch"]
    print(
        f"\nwrk -t{args.threads} -c{args.connections} (batch: -c{args.batch_connections}) "
        f"-d{args.seconds}s, median of {args.rounds} rounds, {os.cpu_count()} cores"
    )
    header = (
        f"{'':8} {'requests/s':>11} {'jobs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}"
    )
    print(header)
    for name, figures, per in (
        ("bare", bare, 0),
        ("single", single, 1),
        ("batch", batch, args.batch),
    ):
        jobs = f"{figures.rps * per:10,.0f}" if per else f"{'-':>10}"
        print(
            f"{name:8} {figures.rps:11,.0f} {jobs} {figures.p50_ms:8.2f} {figures.p99_ms:8.2f} "
            f"{figures.cpu_us:11,.0f}"
        )
    ratio = single.rps / bare.rps
    jobs_per_s = batch.rps * args.batch
    print(f"\nsingle / bare requests/s: {ratio:.0%} (target >= 50%)")
    print(f"batch: {jobs_per_s:,.0f} jobs/s in batches of {args.batch} (target >= 50,000)")
    print(f"bare / single CPU per request: {bare.cpu_us / single.cpu_us:.0%}")


if __name__ == "__main__":
    main()
