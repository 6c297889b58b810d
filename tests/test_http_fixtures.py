"""What the HTTP service's tests share (no tests here): the service in-process behind httpx's
ASGI transport (``api``), and ``conveyor serve`` as a real process on a free port
(``ServeProcess``), both on the session's redis-server (``tests.redis_fixtures``).

The in-process app is built as ``conveyor serve`` builds it (``create_app`` on a
``JobService``); httpx's ASGI transport does not run the lifespan, so ``api`` starts and
closes the service itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from producer.http.app import create_app
from producer.http.service import Enqueued, JobService
from producer.http.settings import ServeSettings
from services.backends import open_async_queue
from services.settings import QueueSettings
from tests.helpers_process import ROOT
from tests.jobs import registry
from tests.redis_fixtures import free_port

TOKEN = "test-token-4f1d8c2b9e"


@pytest.fixture
def anyio_backend() -> str:
    """The anyio plugin runs ``@pytest.mark.anyio`` tests on asyncio (the service's loop)."""
    return "asyncio"


@contextlib.asynccontextmanager
async def api(
    url: str,
    *,
    token: str | None = None,
    max_body_bytes: int = 64 * 1024,
    max_batch: int = 100,
    with_registry: bool = True,
    on_enqueued: Enqueued | None = None,
    **queue: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API served in this process on ``url``'s backend."""
    settings = ServeSettings(token=token, max_body_bytes=max_body_bytes, max_batch=max_batch)
    backend = open_async_queue(url, QueueSettings(**queue))
    service = JobService(
        backend,
        registry=registry if with_registry else None,
        max_batch=max_batch,
        on_enqueued=on_enqueued,
    )
    app = create_app(service, settings)
    await service.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://conveyor") as client:
            yield client
    finally:
        await service.close()


def error_code(response: httpx.Response) -> str:
    """The ``code`` of the JSON error body (and the body has the documented shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return str(body["error"]["code"])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class ServeProcess:
    """``conveyor serve`` as a real process on a free loopback port, logging to a file."""

    def __init__(self, url: str, log_path: Path, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "consumer", "serve", "--url", url]
        command += ["--port", str(self.port), "--jobs", "tests.jobs:registry", *args]
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 20.0) -> ServeProcess:
        """Wait until ``/healthz`` answers (the server is listening)."""

        def up() -> bool:
            assert self.proc.poll() is None, f"serve exited early:\n{self.log()}"
            return self.call("GET", "/healthz")[0] == 200

        wait_for("conveyor serve to listen", up, timeout_s)
        return self

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, Any]:
        """One request; ``(status, decoded JSON body)``, ``(0, None)`` when nobody answers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"null")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL and fail if it does not come)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout_s)

    def wait_exit(self, timeout_s: float = 20.0) -> int:
        """The exit code, once the process ends by itself (SIGKILL and fail if it does not)."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            pytest.fail(f"conveyor serve did not stop within {timeout_s} s:\n{self.log()}")
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the process group if it still runs (cleanup)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


StartServe = Callable[..., ServeProcess]
"""The ``serve`` fixture: ``start(*args, url=None)``, waiting until the service listens."""


@pytest.fixture
def serve(redis_url: str, tmp_path: Path) -> Iterator[StartServe]:
    """Starts ``conveyor serve`` processes on ``redis_url`` (extra args allowed); kills any
    left running after the test."""
    started: list[ServeProcess] = []

    def start(*args: str, url: str | None = None) -> ServeProcess:
        process = ServeProcess(url or redis_url, tmp_path / f"serve-{len(started)}.log", args)
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.kill()
