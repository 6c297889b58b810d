"""A throwaway redis-server for ``conveyor bench --redis-server auto`` (or a binary's path).

It listens on loopback on a free port (never 6379), keeps nothing on disk and is killed when
the benchmark ends; its URL replaces ``--url``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

from consumer.bench_http import free_port
from services.backends import open_probe
from services.errors import BackendUnavailableError, ConfigError


@contextlib.contextmanager
def throwaway_server(binary: str) -> Iterator[str]:
    """Start ``binary`` (``auto``: redis-server on PATH) on a free port; yields its URL."""
    path = shutil.which("redis-server") if binary == "auto" else shutil.which(binary)
    if path is None:
        raise ConfigError(f"--redis-server {binary}: no redis-server found (install redis)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
        args = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder]
        server = subprocess.Popen(
            [*args, "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            _wait_ready(url, server)
            yield url
        finally:
            server.kill()
            server.wait(10)


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    probe = open_probe(url)
    assert probe is not None  # a redis:// URL always has one
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                probe.used_memory()
                return
            except BackendUnavailableError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise ConfigError("the throwaway redis-server did not start") from None
                time.sleep(0.02)
    finally:
        probe.close()
