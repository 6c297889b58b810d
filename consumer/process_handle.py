"""Worker processes as the supervisor sees them: a handle of five members, and how to start one.

The supervisor's loop touches its children only through ``ProcessHandle`` and a ``Launcher``,
so a test can drive reap -> decide -> respawn with fake handles and a fixed clock, no process
started (gunicorn tests its reaping with a mocked ``waitpid`` the same way). ``spawner`` is the
real launcher: a ``multiprocessing`` process running ``run_child``, which imports
``consumer.child`` (the worker stack) in the child only: the supervisor never needs it, and not
importing it shortens its start-up (command -> first job).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from consumer.child_spec import ChildSpec
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


def run_child(spec: ChildSpec) -> None:
    """The children's entry point: ``consumer.child.child_main``, imported here, in the child."""
    # Not at the top: a module-level reference would make the supervisor import the worker
    # stack (executors, asyncio, the worker loop) before it starts its first child.
    from consumer.child import child_main  # noqa: PLC0415

    child_main(spec)


def spawner(start_method: str) -> Launcher:
    """The real launcher: ``run_child`` in a new process of ``start_method``."""
    ctx: Any = multiprocessing.get_context(start_method)

    def launch(spec: ChildSpec) -> ProcessHandle:
        process = ctx.Process(target=run_child, args=(spec,), name=spec.name)
        # SIGINT stays blocked until the child ignores it: Ctrl+C reaches it once, through us.
        with interrupts_ignored():
            process.start()
        return ChildProcess(process)

    return launch


def start_tracker_early(start_method: str) -> None:
    """Start ``multiprocessing``'s resource tracker now, if ``start_method`` uses one.

    Spawn and forkserver start it anyway with the first child: a whole interpreter that would
    otherwise boot beside the children, on the same cores, and delay their first job. Started
    while the supervisor still imports and checks its backend, it boots on a core left idle.
    """
    if start_method != "fork":
        resource_tracker.ensure_running()
