"""Frozen settings objects. The CLI builds them from flags and environment; constructors take them.

No module reads the environment: ``click``'s ``envvar=`` does, in the CLI modules only.
Durations are float seconds, named ``*_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import ConfigError
from services.names import check_queue_name

DEFAULT_URL = "memory://"
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class QueueSettings:
    """How a backend keeps jobs: leases, poison limit, dead letters, results, bounds."""

    lease_s: float = 15.0
    """An in-flight job whose consumer stopped renewing for this long is handed out again."""
    max_redeliveries: int = 3
    """A job whose consumer died this many times is quarantined in the dead letters."""
    dead_letter_max: int = 10_000
    dead_letter_max_age_s: float = 7 * 24 * 3600.0
    result_ttl_s: float = 3600.0
    """How long results and job status stay readable; 0 keeps none."""
    max_depth: int | None = None
    """A bounded queue: ``put`` waits up to ``put_timeout_s`` for room, then raises."""
    put_timeout_s: float = 5.0
    op_timeout_s: float = 5.0
    """Upper bound on any one backend call (socket timeout for Redis)."""
    durable_replicas: int = 0
    """Redis: a put or an ack is confirmed only once this many replicas have it (``WAIT``),
    so a failover cannot lose it; 0 (the default) confirms on the master's word alone."""
    durable_timeout_s: float = 2.0
    """How long a durable put or ack waits for its replicas before it counts as unconfirmed."""


@dataclass(frozen=True)
class RetrySettings:
    """Exponential backoff with full jitter for jobs that raised."""

    base_s: float = 0.5
    cap_s: float = 60.0


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker process fetches, runs and settles jobs."""

    queues: tuple[str, ...] = ("default",)
    """Fetched in this order: a job in an earlier queue is always taken first."""
    job_timeout_s: float = 300.0
    """Default hard timeout of a running job (a job's own ``timeout=`` wins)."""
    prefetch: int = 1
    """Jobs fetched beyond the free slots, at least; while jobs are quick and the queue is deep
    the worker fetches more (up to 128), so fast jobs never wait for a round trip. 0: none."""
    poll_s: float = 1.0
    """Longest a fetch blocks when idle; also how often an idle worker checks its state."""
    shutdown_timeout_s: float = 10.0
    max_jobs: int | None = None
    """Recycle the process after this many jobs (``--max-jobs-per-child``)."""
    max_memory_mb: float | None = None
    """Recycle the process once its resident memory passes this (``--max-memory-per-child``)."""
    burst: bool = False
    """Exit once the queues are empty instead of waiting for more jobs."""
    retry: RetrySettings = RetrySettings()
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    """A job whose JSON-encoded return value is larger fails (retried, then dead-lettered)."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise ConfigError("a worker needs at least one queue")
        for name in self.queues:
            check_queue_name(name)
        if self.max_result_bytes < 1:
            raise ConfigError("max_result_bytes must be at least 1")
