"""``QueueBrowser``: a page of the jobs a queue holds, for the dashboard's queue pages.

Contract: ``browse`` lists the jobs of one queue in one state, a page at a time, without
changing anything: ``waiting`` in the order they will be taken (from the head), ``delayed``
soonest due first (retries waiting for their backoff included). A page is read at one instant;
paging while jobs move may skip or repeat a job (as any offset paging does), never alter one.
Bodies are returned as stored (the caller decodes them); cancelled jobs whose elements are
still in place may appear until a consumer drops them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

WAITING = "waiting"
DELAYED = "delayed"
STATES = (WAITING, DELAYED)


@dataclass(frozen=True)
class Listed:
    """One job of a page: its id, its body as stored, when due (delayed jobs), redeliveries."""

    job_id: str
    body: bytes
    due_at: float | None = None
    redeliveries: int = 0


@runtime_checkable
class QueueBrowser(Protocol):
    """Reads pages of a queue's jobs (``conveyor serve``'s dashboard)."""

    def browse(self, queue: str, state: str, *, offset: int = 0, limit: int = 50) -> list[Listed]:
        """Up to ``limit`` jobs of ``queue`` in ``state`` (``STATES``), from ``offset``.

        Raises:
            ValueError: an unknown state.
        """
