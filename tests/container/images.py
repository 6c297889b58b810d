"""The images the stack test runs, built here from Debian's packages (no image registry is
reached):

    debootstrap --variant=minbase --include=PACKAGES bookworm   -> a tarball, cached by key
    docker import                                               -> conveyor-debian:bookworm-KEY
    tests/container/redis-image/Dockerfile  FROM that           -> conveyor-test-redis:KEY
    ./Dockerfile  --build-arg BASE=that                         -> conveyor-test:latest

The root file system trusts the certificate authorities the host's administrator added (so
pip works behind a TLS-inspecting proxy, as on this machine). One root file system serves both:
Debian's redis-server for the Redis image, python3.11 and python3-venv for the Conveyor image.
Builds run with ``--network host`` so apt and pip inside them reach the package registries (the
engine itself has no bridge). The engine's layer cache makes a rebuild with unchanged sources
take seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.container.cache import cache_dir
from tests.container.engine import DockerEngine, EngineError, run_checked
from tests.helpers_process import ROOT

SUITE = "bookworm"
PACKAGES = ("python3.11", "python3-venv", "redis-server")
_HERE = Path(__file__).resolve().parent
_BUILD_DEADLINE_S = 900.0
_LOCAL_CAS = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class StackImages:
    """Local image names for ``REDIS_IMAGE`` and ``CONVEYOR_IMAGE``."""

    redis: str
    conveyor: str


def _local_cas() -> list[Path]:
    """The certificate authorities this host's administrator added to the system store: a
    TLS-inspecting proxy's among them, pip inside a build must trust them too (Debian's pip
    reads the system store)."""
    return sorted(_LOCAL_CAS.glob("**/*.crt"))


def _key() -> str:
    """The cache key of the root file system: the recipe and the local CAs it carries."""
    recipe = hashlib.sha256(f"{SUITE} minbase {','.join(PACKAGES)}".encode())
    for certificate in _local_cas():
        recipe.update(certificate.read_bytes())
    return recipe.hexdigest()[:12]


def _timed(what: str, started: float) -> None:
    # Shown with `pytest -s`: where a cold run spends its time.
    print(f"[container] {what}: {time.monotonic() - started:.1f} s")


def rootfs_tarball() -> Path:
    """The debootstrap root file system as a tarball: made once per package list, written to a
    temporary name and renamed, so an interrupted run never leaves a half tarball behind."""
    folder = cache_dir() / "rootfs"
    folder.mkdir(exist_ok=True)
    tarball = folder / f"debian-{SUITE}-{_key()}.tar"
    if tarball.exists():
        return tarball
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=folder) as work:
        root = Path(work) / "root"
        run_checked(
            [
                *("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"),
                *(SUITE, str(root)),
            ],
            env=dict(os.environ),
            timeout_s=_BUILD_DEADLINE_S,
        )
        for certificate in _local_cas():
            shutil.copy(certificate, root / certificate.relative_to("/"))
        run_checked(
            ["chroot", str(root), "update-ca-certificates"], env=dict(os.environ), timeout_s=60
        )
        # Downloaded packages and package lists are dead weight in an image (~95 MB); a build
        # that needs more packages runs apt-get update first, as on any Debian image.
        for package in root.glob("var/cache/apt/archives/*.deb"):
            package.unlink()
        shutil.rmtree(root / "var/lib/apt/lists")
        (root / "var/lib/apt/lists/partial").mkdir(parents=True)
        partial = Path(work) / "rootfs.tar"
        run_checked(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
            env=dict(os.environ),
            timeout_s=_BUILD_DEADLINE_S,
        )
        partial.rename(tarball)
    for other in folder.glob(f"debian-{SUITE}-*.tar"):
        if other != tarball:  # made for another package list or other CAs
            other.unlink()
    _timed("debootstrap + tar", started)
    return tarball


def base_image(engine: DockerEngine) -> str:
    """``conveyor-debian:bookworm-KEY`` in the engine, imported from the tarball unless the
    (cached) data root has it already. A tarball docker cannot import is made again, once."""
    tag = f"conveyor-debian:{SUITE}-{_key()}"
    if engine.docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    _drop_other_keys(engine)
    tarball = rootfs_tarball()
    started = time.monotonic()
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["bash"]',
    ]
    flags = [arg for change in changes for arg in ("--change", change)]
    try:
        engine.docker("import", *flags, str(tarball), tag, timeout_s=300)
    except EngineError:
        tarball.unlink()
        engine.docker("import", *flags, str(rootfs_tarball()), tag, timeout_s=300)
    _timed("docker import", started)
    return tag


def _drop_other_keys(engine: DockerEngine) -> None:
    """Remove the base and Redis images of other keys: the data root keeps one set."""
    listed = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    stale = [
        name
        for name in listed
        if name.startswith(("conveyor-debian:", "conveyor-test-redis:"))
        and not name.endswith(_key())
    ]
    if stale:
        engine.docker("rmi", *stale)


def build_image(
    engine: DockerEngine, tag: str, *, context: Path, build_args: dict[str, str]
) -> None:
    """``docker build --network host`` of ``context``'s Dockerfile as ``tag``."""
    started = time.monotonic()
    args = [arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")]
    engine.docker(
        *("build", "--network", "host", "--tag", tag, *args, str(context)),
        timeout_s=_BUILD_DEADLINE_S,
    )
    _timed(f"docker build {tag}", started)


def stack_images(engine: DockerEngine) -> StackImages:
    """Build (or find in the layer cache) the Redis and Conveyor images on the Debian base."""
    base = base_image(engine)
    images = StackImages(redis=f"conveyor-test-redis:{_key()}", conveyor="conveyor-test:latest")
    build_image(engine, images.redis, context=_HERE / "redis-image", build_args={"BASE": base})
    build_image(engine, images.conveyor, context=ROOT, build_args={"BASE": base})
    return images
