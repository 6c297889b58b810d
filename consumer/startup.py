"""What ``conveyor worker`` and ``conveyor run`` do with the backend before anything starts.

A backend that refuses us (wrong password, an ACL that denies a command) is a configuration
error: it is raised at once and the command exits 2, instead of worker processes crashing and
being restarted forever. A backend that cannot be reached *yet* is waited for by the worker,
with logged retries and capped backoff, as a worker started before its broker should;
``conveyor run`` is interactive and fails at once instead.
"""

from __future__ import annotations

import logging
import select

from consumer.signals import recorded_signals
from services.errors import BackendUnavailableError
from services.protocol import ConsumerControl

log = logging.getLogger("conveyor.startup")


def check_backend(backend: ConsumerControl) -> None:
    """Ask the backend once; on any error close it and let the error reach the user."""
    try:
        backend.check_server()  # the backend logs its warnings itself
    except BaseException:
        backend.close()
        raise


def wait_for_backend(backend: ConsumerControl, *, cap_s: float = 30.0) -> bool:
    """Check the backend, retrying while it is unreachable; False if a signal came first.

    Configuration errors (wrong password, ACL) are raised at once: retrying cannot fix them.
    The backend is closed unless this returns True.
    """
    pause = 0.5
    with recorded_signals() as signals:
        while True:
            try:
                backend.check_server()  # the backend logs its warnings itself
                return True
            except BackendUnavailableError as exc:
                log.warning("%s; retrying in %.1f s (Ctrl+C to stop)", exc, pause)
            except BaseException:
                backend.close()
                raise
            if signals.wakeup_fd is not None:
                select.select([signals.wakeup_fd], [], [], pause)
            if signals.take():
                backend.close()
                return False
            pause = min(pause * 2, cap_s)
