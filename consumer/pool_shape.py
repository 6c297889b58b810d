"""Pool kinds: how many worker processes, and which executor runs jobs inside each.

=============  ==========================  ===========================================
pool           processes                   inside each process
=============  ==========================  ===========================================
processes      ``--concurrency`` N         ``--threads`` M threads (default 1)
threads        ``--processes`` K (def. 1)  N threads
asyncio        ``--processes`` K (def. 1)  one event loop running up to N jobs
=============  ==========================  ===========================================

Every pool runs under the supervisor, in child processes: a stuck thread cannot be killed, but
its host process can be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from services.errors import ConfigError

if TYPE_CHECKING:
    from consumer.executors import Executor
    from consumer.mailbox import Mailbox


class PoolKind(StrEnum):
    """The pool kinds users choose from (``--pool``)."""

    PROCESSES = "processes"
    THREADS = "threads"
    ASYNCIO = "asyncio"


@dataclass(frozen=True)
class PoolShape:
    """How many processes, how many job slots in each, and which executor."""

    kind: PoolKind
    processes: int
    slots: int

    @property
    def concurrency(self) -> int:
        return self.processes * self.slots

    def make_executor(self, mailbox: Mailbox) -> Executor:
        """The executor for one child process of this pool, running the tasks of ``mailbox``."""
        # Imported here: the supervisor holds shapes but runs no job (its start-up stays short).
        from consumer.executors import AsyncioExecutor, ThreadExecutor  # noqa: PLC0415

        if self.kind is PoolKind.ASYNCIO:
            return AsyncioExecutor(self.slots, mailbox)
        return ThreadExecutor(self.slots, mailbox)


def shape_pool(
    kind: PoolKind, concurrency: int, *, threads: int | None = None, processes: int | None = None
) -> PoolShape:
    """The shape of ``--pool KIND --concurrency N [--threads M] [--processes K]``."""
    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if kind is PoolKind.PROCESSES:
        if processes is not None:
            raise ConfigError("--processes is for threads/asyncio pools; use --concurrency")
        return PoolShape(kind, processes=concurrency, slots=threads or 1)
    if threads is not None:
        raise ConfigError("--threads is for the processes pool; use --concurrency")
    return PoolShape(kind, processes=processes or 1, slots=concurrency)
