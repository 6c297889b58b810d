"""The old name of the queue protocol module: a re-export of ``services.protocol``.

Import from ``services.protocol`` instead; ``JobQueue`` is the old name of ``Backend``.
"""

from __future__ import annotations

from services.protocol import (
    Backend,
    Completion,
    Connector,
    DeadLetter,
    Delivery,
    JobQueue,
    JobStatus,
    QueueCounts,
)

__all__ = [
    "Backend",
    "Completion",
    "Connector",
    "DeadLetter",
    "Delivery",
    "JobQueue",
    "JobStatus",
    "QueueCounts",
]
