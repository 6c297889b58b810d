"""``ChildSpec``: everything a worker process needs, built by the supervisor (plain picklable
data, so it crosses a spawn).

It lives apart from ``consumer.child`` so that the supervisor, which builds specs but runs no
job, does not import the worker stack (executors, asyncio, the worker loop): that import is
the child's, and the supervisor's start-up (command -> first job) stays short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consumer.pool_shape import PoolShape
from services.logs import LogSettings
from services.metrics.job_counters import JobCounters
from services.protocol import Connector
from services.settings import WorkerSettings


@dataclass(frozen=True)
class ChildSpec:
    """Everything a worker process needs, built by the supervisor."""

    name: str
    connector: Connector
    jobs: str
    shape: PoolShape
    settings: WorkerSettings
    stats_block: Any
    board_block: Any
    parent_pid: int
    logs: LogSettings = field(default_factory=LogSettings)
    consumer_id: str = ""
    job_counters: JobCounters | None = None
    """The seat's per-job counters, kept when the supervisor serves metrics."""
