"""``conveyor bench``'s http phase: a real ``conveyor serve`` subprocess and keep-alive clients.

::

    serving(url)   python -m consumer serve --url URL --port <free> (loopback, no access log, no
                   dashboard, no history sampling, the bench registry checking every job), then
                   GET /healthz until it answers (deadline); on exit SIGTERM, then SIGKILL
    post_all(...)  the same body POSTed ``requests`` times over ``clients`` keep-alive
                   connections, one thread each; every answer must be 202; seconds elapsed

The clients are the standard library's ``http.client`` (HTTP/1.1 keeps the connection open):
``httpx`` is only a development dependency, and the lighter client leaves more of a small
machine to the server, which is what is measured.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO

from services.errors import ConveyorError

SERVE_ARGS = (
    "--host",
    "127.0.0.1",
    "--no-access-log",
    "--no-dashboard",
    "--history-interval",
    "0",
    "--jobs",
    "consumer.bench_jobs:registry",
    "--log-level",
    "warning",
)
"""What the bench's ``conveyor serve`` runs with besides the URL and port (``--serve-arg``
adds to these; a later repeat of an option wins, as click reads them)."""
START_TIMEOUT_S = 30.0
"""From spawn to the first 200 of /healthz: importing FastAPI on a busy 2-core machine is slow."""
STOP_TIMEOUT_S = 10.0
"""After SIGTERM, how long the server may take to exit before SIGKILL."""
REQUEST_TIMEOUT_S = 30.0


class HttpBenchError(ConveyorError):
    """The server did not start, or a request was not accepted (exit code 1, like BenchError)."""


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(url: str, *, extra_args: Sequence[str] = (), port: int | None = None) -> Iterator[int]:
    """Run ``conveyor serve`` on ``url`` until the block ends; yields the port it answers on."""
    port = port or free_port()
    command = [sys.executable, "-m", "consumer", "serve", "--url", url, "--port", str(port)]
    # The operator's CONVEYOR_* variables (a token, another URL) would change what is served.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [*command, *SERVE_ARGS, *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # the terminal's Ctrl+C reaches the bench, which stops it
        )
        try:
            _wait_healthy(server, port, log)
            yield port
        finally:
            _stop(server)


def _wait_healthy(server: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(port):
        if server.poll() is not None:
            raise HttpBenchError(
                f"conveyor serve exited with code {server.returncode} before /healthz answered: "
                + _tail(log)
            )
        if time.monotonic() > deadline:
            raise HttpBenchError(
                f"conveyor serve did not answer /healthz on port {port} within "
                f"{START_TIMEOUT_S:.0f} s: " + _tail(log)
            )
        time.sleep(0.05)


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status == 200 and b'"ok"' in response.read()
    except OSError:  # refused, reset or timed out: not listening yet
        return False
    finally:
        connection.close()


def _tail(log: IO[bytes], lines: int = 5) -> str:
    log.seek(0)
    text = log.read().decode(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(text) or "(it printed nothing)"


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            server.kill()
    server.wait()


def post_all(port: int, path: str, body: bytes, *, requests: int, clients: int) -> float:
    """POST ``body`` to ``path`` ``requests`` times over ``clients`` keep-alive connections, at
    once; the seconds from the first request to the last answer. Raises if any is not 202."""
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    shares = [share for share in shares if share]
    connections = [_connect(port) for _ in shares]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_post_share, args=(c, path, body, share, errors))
        for c, share in zip(connections, shares, strict=True)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    if errors:
        raise HttpBenchError(f"POST {path}: {errors[0]}")
    return elapsed


def _connect(port: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    connection.connect()  # before the clock starts: the figure is requests, not handshakes
    return connection


def _post_share(
    connection: http.client.HTTPConnection, path: str, body: bytes, count: int, errors: list[str]
) -> None:
    headers = {"Content-Type": "application/json"}
    try:
        for _ in range(count):
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            answer = response.read()  # read to the end, or the connection cannot be reused
            if response.status != 202:
                errors.append(f"{response.status} {answer[:200].decode(errors='replace')}")
                return
    except (OSError, http.client.HTTPException) as exc:  # list.append is atomic: threads share it
        errors.append(f"{type(exc).__name__}: {exc}")
