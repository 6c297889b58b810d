"""A private Docker engine for the container tests: ``dockerd`` on a socket, exec root and pid
file of its own (never /var/run/docker.sock), stopped by its pid, with no process left behind.

    DockerEngine(EngineDirs(run=<tmp>, data=<data root>))
        .start()   dockerd --storage-driver=vfs --iptables=false --bridge=none ...
                   then polls ``docker info`` until it answers (deadline)
        .docker(...) / .env()   the CLI and the environment (DOCKER_HOST) for docker-compose
        .stop()    SIGTERM to dockerd's pid; then every process it started (containerd, shims,
                   docker-proxy) must be gone by a deadline, else it is killed and reported;
                   mounts it left in its folders are released

vfs needs no overlay support from the kernel; ``--iptables=false --bridge=none`` leave the
host's firewall and its default bridge alone (user-defined networks, service names and
published ports still work: the userland proxy forwards them). The data root may be a cache
kept between runs (``tests.container.cache``); the run folder is always new.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers_process import children_of

_PR_SET_PDEATHSIG = 1


class EngineError(RuntimeError):
    """The engine did not start, a command failed, or it left processes behind."""


def docker_cli() -> str:
    """The docker CLI to drive the engine with: Debian's, of the daemon's own version (this
    machine kind also carries a newer static CLI in /usr/local/bin whose ``docker build``
    prefers BuildKit plugins it does not have). ``CONVEYOR_DOCKER_CLI`` picks another."""
    return os.environ.get("CONVEYOR_DOCKER_CLI", "/usr/bin/docker")


def wait_until(check: Callable[[], bool], *, deadline_s: float, what: str) -> None:
    """Poll ``check`` every 0.2 s until it is true; EngineError naming ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise EngineError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.2)


@dataclass(frozen=True)
class EngineDirs:
    """Where one engine keeps its state: ``run`` is new for each start and short (a unix socket
    path must fit in 108 bytes); ``data`` holds images, layers and volumes."""

    run: Path
    data: Path

    @property
    def socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.run / "exec"

    @property
    def pidfile(self) -> Path:
        return self.run / "docker.pid"

    @property
    def log(self) -> Path:
        return self.run / "dockerd.log"


def _die_with_parent() -> None:
    # Linux prctl: if the test process dies (killed by a timeout, Ctrl+C twice), the kernel
    # sends SIGTERM to dockerd, so no daemon outlives the run that started it.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _mentioning(text: str) -> set[int]:
    """Processes whose command line names ``text``: containerd shims outlive their parent and
    are found by the socket path of our containerd that they carry."""
    pids = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    return {pid for pid in pids if pid != os.getpid() and text in _cmdline(pid)}


class DockerEngine:
    """One dockerd process and the CLI pointed at it. ``start()`` acts; the constructor stores."""

    def __init__(self, dirs: EngineDirs) -> None:
        self.dirs = dirs
        self._daemon: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.dirs.socket}"

    def env(self) -> dict[str, str]:
        """The environment for docker and docker-compose: this engine, the classic builder
        (no BuildKit plugin is installed; compose 1.29 builds through the API anyway)."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }

    def start(self, *, deadline_s: float = 60.0) -> None:
        """Start dockerd and return once ``docker info`` answers; EngineError with the end of
        its log if it exits or stays silent until the deadline."""
        self.dirs.run.mkdir(parents=True, exist_ok=True)
        self.dirs.data.mkdir(parents=True, exist_ok=True)
        command = [
            "dockerd",
            *("--storage-driver=vfs", "--iptables=false", "--bridge=none"),
            *("--data-root", str(self.dirs.data), "--exec-root", str(self.dirs.exec_root)),
            *("--pidfile", str(self.dirs.pidfile), "-H", self.host),
        ]
        with self.dirs.log.open("ab") as log:
            try:
                self._daemon = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 (no thread runs at this point)
                )
            except FileNotFoundError:
                raise EngineError("no dockerd on PATH: apt-get install docker.io") from None
        try:
            wait_until(self._answers, deadline_s=deadline_s, what="dockerd to answer")
        except EngineError:
            self.stop()
            raise

    def _answers(self) -> bool:
        assert self._daemon is not None
        if self._daemon.poll() is not None:
            raise EngineError(f"dockerd exited {self._daemon.returncode}\n{self.log_tail()}")
        try:
            probe = subprocess.run(
                [docker_cli(), "-H", self.host, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return probe.returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        """The last lines dockerd wrote: the reason it failed, in its own words."""
        with contextlib.suppress(OSError):
            text = self.dirs.log.read_text(errors="replace")
            return "dockerd log (end):\n" + "\n".join(text.splitlines()[-lines:])
        return "dockerd left no log"

    def docker(
        self, *args: str, timeout_s: float = 120.0, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine; EngineError with its output if it fails and
        ``check`` is set."""
        return run_checked(
            [docker_cli(), *args], env=self.env(), timeout_s=timeout_s, stdin=stdin, check=check
        )

    def stop(self, *, deadline_s: float = 30.0) -> None:
        """SIGTERM dockerd by its pid and wait; then every process it had started must end by
        the deadline. Leftovers are SIGKILLed and reported as an EngineError."""
        daemon, self._daemon = self._daemon, None
        if daemon is None:
            return
        started = _descendants(daemon.pid) | _mentioning(str(self.dirs.exec_root))
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
                raise EngineError(f"dockerd ignored SIGTERM for {deadline_s:.0f} s") from None
        with contextlib.suppress(EngineError):
            wait_until(
                lambda: not _alive(started), deadline_s=deadline_s, what="dockerd's children"
            )
        left = _alive(started) | _mentioning(str(self.dirs.exec_root))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stuck = _unmount_under(self.dirs.run, self.dirs.data)
        if left or stuck:
            names = "; ".join(f"{pid}: {_cmdline(pid)}" for pid in sorted(left))
            raise EngineError(f"outlived dockerd: processes (killed) {names}; mounts {stuck}")


def _unmount_under(*folders: Path) -> list[str]:
    """Unmount what dockerd left mounted in our folders (it leaves the bind mount of its
    default network namespace, exec-root/netns/default, behind); the mounts that stay."""
    prefixes = tuple(f"{folder}/" for folder in folders)
    points = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if f"{line.split()[1]}/".startswith(prefixes)
    ]
    # Deepest first, so a mount inside another is released before its parent.
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)
    mounted = {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()}
    return [point for point in points if point in mounted]


def _alive(pids: set[int]) -> set[int]:
    # A zombie has an empty command line: it is gone as far as we are concerned.
    return {pid for pid in pids if _cmdline(pid)}


def run_checked(
    command: list[str],
    *,
    env: dict[str, str],
    timeout_s: float,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with text output; EngineError with its output if it fails (``check``)."""
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    if check and done.returncode != 0:
        raise EngineError(
            f"{' '.join(command)} exited {done.returncode}\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}"
        )
    return done
