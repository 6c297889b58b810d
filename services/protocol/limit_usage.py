"""``LimitInspector``: how much of each limit is in use now, for the dashboard's Limits page.

Contract: ``limit_usage`` reads, never changes: for a concurrency limit, the permits held by
live holders (a holder whose lease lapsed is not counted, whether or not it was dropped yet)
and the jobs parked waiting for one; for a rate, the jobs parked holding a reserved start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from services.limits import Limit


@dataclass(frozen=True)
class LimitUsage:
    """One limit now: ``held`` permits (concurrency; 0 for a rate), ``parked`` jobs."""

    key: str
    kind: str
    """``concurrency`` or ``rate``."""
    held: int
    parked: int


@runtime_checkable
class LimitInspector(Protocol):
    """Reads the use of limits (``conveyor serve``'s dashboard)."""

    def limit_usage(self, limits: Sequence[Limit]) -> list[LimitUsage]:
        """The use of each of ``limits`` now, in their order (one round trip on Redis)."""
