"""What a supervisor runs and how it treats its children, and the ``ChildSpec`` each seat's
process gets from it (build in the parent: plain picklable data, so it works under spawn;
the child logs as its parent does: ``log_level`` and ``log_format`` go into its spec).

In a fleet, ``group`` names the supervisors that share one desired total (``conveyor scale
GROUP=N``), and ``max_processes`` bounds this supervisor's share of it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from consumer.child_spec import ChildSpec
from consumer.pool_shape import PoolShape
from consumer.restart_policy import RestartPolicy
from consumer.seats import Seat
from services.errors import ConfigError
from services.logs import LogFormat, LogSettings
from services.metrics.job_counters import JobCounters
from services.protocol import Connector
from services.settings import WorkerSettings


@dataclass(frozen=True)
class SupervisorSettings:
    """What the supervisor runs and how it treats its children."""

    jobs: str
    shape: PoolShape
    worker: WorkerSettings
    start_method: str = "spawn"
    restart_base_s: float = 0.5
    restart_cap_s: float = 30.0
    hang_timeout_s: float = 60.0
    """A child whose loop has not turned for this long (a job holding the GIL in C) is killed."""
    log_level: int = logging.INFO
    log_format: LogFormat = LogFormat.TEXT
    group: str = "default"
    """The fleet group it belongs to (``--group``)."""
    max_processes: int | None = None
    """The most worker processes its group's total may give it (``--max-processes``); None:
    as many as it starts with, or the number of CPUs if that is more (``process_cap``)."""

    def __post_init__(self) -> None:
        if self.max_processes is not None and self.max_processes < self.shape.processes:
            raise ConfigError(
                f"--max-processes {self.max_processes} is below the {self.shape.processes} "
                "worker process(es) it starts with"
            )

    @property
    def process_cap(self) -> int:
        """The most worker processes it runs, whatever its group's total."""
        if self.max_processes is not None:
            return self.max_processes
        return max(self.shape.processes, os.cpu_count() or 1)

    @property
    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(base_s=self.restart_base_s, cap_s=self.restart_cap_s)

    def child_spec(
        self, seat: Seat, connector: Connector, *, job_counters: JobCounters | None = None
    ) -> ChildSpec:
        """The spec of the next process of ``seat`` (prepared), consuming through
        ``connector``, counting its jobs into ``job_counters`` if given."""
        return ChildSpec(
            name=f"worker-{seat.index}",
            connector=connector,
            jobs=self.jobs,
            shape=self.shape,
            settings=self.worker,
            stats_block=seat.stats.block,
            board_block=seat.board,
            parent_pid=os.getpid(),
            logs=LogSettings(self.log_level, self.log_format),
            consumer_id=seat.consumer_id,
            job_counters=job_counters,
        )
