"""``Backend``: every role at once; what a backend class implements and ``open_queue`` returns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from services.protocol.control import ConsumerControl
from services.protocol.fleet import FleetControl
from services.protocol.inspection import QueueAdmin, QueueInspector
from services.protocol.limiting import JobLimiter
from services.protocol.putting import JobPutter
from services.protocol.scheduling import ScheduleStore
from services.protocol.taking import JobTaker


@runtime_checkable
class Backend(
    JobPutter,
    JobTaker,
    JobLimiter,
    ConsumerControl,
    QueueInspector,
    QueueAdmin,
    ScheduleStore,
    Protocol,
):
    """A connection to one backend, used by one process (a producer, a consumer, a supervisor).

    Callers depend on the smallest role they use; only code that builds connections (and
    backends themselves) names ``Backend``.
    """

    def fleet(self) -> FleetControl:
        """The backend's fleet state (``FleetControl``), on this connection's clients.

        Only a root connection has one: a connection a child process opened through a
        ``Connector`` may raise ``ConfigError`` instead (the memory backend's fleet lives in
        its root process). Each call returns the same object; ``close`` releases it too.
        """

    def close(self) -> None:
        """Release the connection; in-flight jobs are not settled (see ``reclaim``)."""
