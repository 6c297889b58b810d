"""Signal handling that only records: handlers append the signal number, the main loop acts.

``recorded_signals`` installs the handlers for the duration of a ``with`` block and restores the
old ones after. A wake-up pipe lets a loop that waits on file descriptors wake at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Iterator
from types import FrameType


class SignalLog:
    """Signals received and not yet handled, in order."""

    def __init__(self) -> None:
        self._received: deque[int] = deque()
        self.wakeup_fd: int | None = None
        """Readable whenever a signal arrived: include it in a ``wait()``."""

    def record(self, signum: int, frame: FrameType | None) -> None:
        """The handler itself: remember the signal, nothing else."""
        self._received.append(signum)

    def take(self) -> list[int]:
        """The signals received since the last call, and clear the wake-up pipe."""
        taken = []
        while self._received:
            taken.append(self._received.popleft())
        if self.wakeup_fd is not None:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wakeup_fd, 4096)
        return taken


@contextlib.contextmanager
def recorded_signals(*signums: signal.Signals) -> Iterator[SignalLog]:
    """Record ``signums`` (default SIGTERM and SIGINT) while the block runs."""
    chosen = signums or (signal.SIGTERM, signal.SIGINT)
    log = SignalLog()
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    log.wakeup_fd = read_fd
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    old = {signum: signal.signal(signum, log.record) for signum in chosen}
    try:
        yield log
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(old_wakeup)
        os.close(read_fd)
        os.close(write_fd)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Start children inside this block so that SIGINT cannot reach them until they ignore it.

    SIGINT is *blocked* (not ignored) in this thread for the block: a Ctrl+C that lands now
    stays pending and is delivered to this process's handler when the block ends. Ignoring it
    instead would throw it away (and setting SIG_IGN discards a pending SIGINT too), so a run
    interrupted while it starts a child would carry on.

    A child inherits the signal mask across fork and exec, so it starts with SIGINT blocked: a
    Ctrl+C that lands while it is still importing cannot print a traceback from it. The child
    then calls ``ignore_interrupts``, which ignores SIGINT for good and unblocks it.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_interrupts() -> None:
    """Children ignore SIGINT: Ctrl+C reaches them once, through the supervisor.

    Ignore first, then unblock (``interrupts_ignored`` started us with it blocked): setting
    SIG_IGN discards a SIGINT still pending, so none is delivered in between.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
