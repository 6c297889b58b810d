"""What a supervisor's ``/metrics`` shows of its pool: its children's job counters and its own
numbers, read by the scrape thread without touching the supervisor's loop.

::

    worker process --JobCounters (shared memory, one per seat)--+
    supervisor loop --publish() each turn, restarted()----------+--> families() <-- a scrape

Each seat number gets its ``JobCounters`` once and keeps it for good: the processes that fill
that seat in turn (restarts, recycling, a seat removed by a shrink and added again) all count
into it, so a scrape never sees a count go backwards. The loop's numbers are published as one
immutable ``PoolNumbers`` per turn; the scrape thread reads the latest, never the roster.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.metrics.families import Family, job_families, pool_families
from services.metrics.job_counters import JobCounters, JobLabels, read_rows


@dataclass(frozen=True)
class PoolNumbers:
    """The supervisor's numbers as of its last turn."""

    desired: int = 0
    alive: int = 0
    running: int = 0


class PoolMetrics:
    """Job counters by seat, and the supervisor's published numbers."""

    def __init__(self, labels: JobLabels) -> None:
        self.labels = labels
        self._seats: dict[int, JobCounters] = {}
        self._numbers = PoolNumbers()
        self._restarts = 0

    def counters(self, seat: int) -> JobCounters:
        """Seat number ``seat``'s counters, made on first use (hand them to its child)."""
        if seat not in self._seats:
            self._seats[seat] = JobCounters(self.labels)
        return self._seats[seat]

    def publish(self, numbers: PoolNumbers) -> None:
        self._numbers = numbers

    def restarted(self) -> None:
        """A worker process will be started again in a seat whose process ended."""
        self._restarts += 1

    def families(self) -> list[Family]:
        """Every family, summed over every seat (called by the scrape thread)."""
        seats = list(self._seats.values())  # one atomic copy: the loop may add a seat
        numbers = self._numbers
        return [
            *job_families(read_rows(self.labels, seats)),
            *pool_families(
                desired=numbers.desired,
                alive=numbers.alive,
                running=numbers.running,
                restarts=self._restarts,
            ),
        ]
