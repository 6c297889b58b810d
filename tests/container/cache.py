"""What the container tests keep between runs, under ``/var/cache/conveyor-docker`` (CI runs
on this same machine later, so it finds what an earlier run left; ``CONVEYOR_DOCKER_CACHE``
moves it):

    rootfs/debian-<suite>-<key>.tar   the debootstrap root file system, keyed by its packages
    engine/                           dockerd's data root: images built once are reused
    engine.lock                       one run at a time uses engine/ (flock)

Everything here may be thrown away: a missing entry is rebuilt, and a data root that dockerd
cannot load (while it starts on an empty one) is removed and rebuilt. A run that finds the lock
taken (another run is using the engine) starts from an empty data root of its own instead of
waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.container.engine import DockerEngine, EngineDirs, EngineError


def cache_dir() -> Path:
    """The folder kept between runs (created on first use)."""
    path = Path(os.environ.get("CONVEYOR_DOCKER_CACHE", "/var/cache/conveyor-docker"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _data_root(scratch: Path) -> Iterator[tuple[Path, bool]]:
    """``(data root, cached)``: the cached one, locked for this run, or ``scratch/data``."""
    cache = cache_dir()
    with (cache / "engine.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield scratch / "data", False
            return
        try:
            yield cache / "engine", True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(dirs: EngineDirs) -> DockerEngine:
    engine = DockerEngine(dirs)
    engine.start()
    try:
        # Containers, volumes and networks of an interrupted earlier run are ours to drop; so
        # are images whose tag a rebuild moved on (that keeps the vfs data root's size bounded).
        for kind in ("container", "volume", "network", "image"):
            engine.docker(kind, "prune", "--force")
    except EngineError:
        engine.stop()
        raise
    return engine


def _start_or_rebuild(scratch: Path, data: Path, *, cached: bool) -> DockerEngine:
    try:
        return _start(EngineDirs(run=scratch / "run", data=data))
    except EngineError:
        if not cached:
            raise
    # Does dockerd start on an empty data root? If not, the cache is not to blame (and this
    # raises dockerd's own words); if it does, the cached data root is dropped and rebuilt.
    _start(EngineDirs(run=scratch / "probe", data=scratch / "probe-data")).stop()
    shutil.rmtree(data)
    return _start(EngineDirs(run=scratch / "run2", data=data))


@contextlib.contextmanager
def cached_engine() -> Iterator[DockerEngine]:
    """A started engine on the cached data root (or a scratch one), stopped on the way out,
    its run folder removed."""
    # A short folder in /tmp: containerd's sockets live under the exec root (108-byte limit).
    scratch = Path(tempfile.mkdtemp(prefix="cvd-", dir="/tmp"))
    try:
        with _data_root(scratch) as (data, cached):
            engine = _start_or_rebuild(scratch, data, cached=cached)
            try:
                yield engine
            finally:
                engine.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
