"""Worker processes as the supervisor sees them: a handle of five members, and how to start one.

The supervisor's loop touches its children only through ``ProcessHandle`` and a ``Launcher``,
so a test can drive reap -> decide -> respawn with fake handles and a fixed clock, no process
started (gunicorn tests its reaping with a mocked ``waitpid`` the same way). ``spawner`` is the
real launcher: a ``multiprocessing`` process running ``child_main``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from consumer.child import ChildSpec, child_main
from consumer.signals import interrupts_ignored


class ProcessHandle(Protocol):
    """One started child process."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None:
        """None while it runs; its exit code, or minus the signal that killed it."""

    @property
    def sentinel(self) -> int | None:
        """A descriptor that becomes ready when it ends (for ``wait``); None: nothing to wait
        on (a fake)."""

    def join(self) -> None:
        """Collect it once it ended (no zombie left)."""

    def signal(self, signum: int) -> None:
        """Send ``signum`` if it still runs (one that just ended is not an error)."""


Launcher = Callable[[ChildSpec], ProcessHandle]
"""Starts a child for a ``ChildSpec`` and returns its handle."""


class ChildProcess:
    """``ProcessHandle`` of a ``multiprocessing`` process."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    @property
    def sentinel(self) -> int | None:
        return self._process.sentinel

    def join(self) -> None:
        self._process.join()

    def signal(self, signum: int) -> None:
        if self._process.exitcode is None and self._process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)


def spawner(start_method: str) -> Launcher:
    """The real launcher: ``child_main`` in a new process of ``start_method``."""
    ctx: Any = multiprocessing.get_context(start_method)

    def launch(spec: ChildSpec) -> ProcessHandle:
        process = ctx.Process(target=child_main, args=(spec,), name=spec.name)
        # SIGINT stays blocked until the child ignores it: Ctrl+C reaches it once, through us.
        with interrupts_ignored():
            process.start()
        return ChildProcess(process)

    return launch
