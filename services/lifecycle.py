"""Process lifecycle helpers shared by every child process Conveyor starts."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import NoReturn

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies.

    The kernel fires it when the parent *thread* that forked us exits, so parents start children
    from their main thread. Elsewhere this does nothing; loops also compare ``os.getppid()``.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


def exit_now(code: int) -> NoReturn:
    """Leave a child process without joining threads that may be stuck in a job.

    ``os._exit`` skips interpreter shutdown, so flush logs and output first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parent_alive(parent_pid: int) -> bool:
    """True while the process that started us is still our parent (not reparented to init)."""
    return os.getppid() == parent_pid
