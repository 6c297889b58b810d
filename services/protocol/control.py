"""``ConsumerControl``: the supervisor's role. It starts consumers elsewhere and reclaims the
jobs of those that died; ``Connector`` is the recipe a child process consumes with.

Delivery contract of this role (every backend, proven by ``services.testing.contract``):

* **Crashes hand jobs back.** When the consumer that holds a delivery dies, ``reclaim`` (called
  by whoever saw it die) or the backend's own lease expiry puts its in-flight jobs back at the
  front of their queue, those it was running with ``redeliveries + 1``. A job redelivered more than
  ``QueueSettings.max_redeliveries`` times is a poison job: it is dead-lettered instead, with the
  reason ("worker died: signal 9, 3 times").
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from services.protocol.backend import Backend


class Connector(Protocol):
    """A picklable recipe with which a child process opens its own ``Backend``."""

    @property
    def durable(self) -> bool:
        """False when the queue lives in the process that made this connector (``memory://``):
        if that process dies, every job queued there is lost, and nothing can be handed back."""

    def open(self) -> Backend:
        """Connect (in the child) and return the queue, owned by this connector's consumer."""


@runtime_checkable
class ConsumerControl(Protocol):
    """Lets consumers connect from child processes and takes back what dead ones held."""

    def connector(self, consumer_id: str) -> Connector:
        """A picklable recipe for a child process to consume as ``consumer_id``.

        The supervisor calls this in the parent for each child it starts, and ``reclaim`` with
        the same id once the child is gone (which also frees what the connector held).
        """

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """A consumer died of ``reason``: hand back its in-flight jobs now; returns how many.

        Only the jobs in ``suspects`` (the ones it was running) count as crash redeliveries;
        the others it had merely prefetched go back uncounted. None: count them all.
        """

    def alarms(self) -> list[str]:
        """Serious events this connection has seen (e.g. "Redis restarted empty: ..."), oldest
        first; sticky for the life of the connection, so health and status keep showing them."""

    def check_server(self) -> list[str]:
        """Warnings about the backend's setup (eviction, persistence, lost data); logged too."""

    def close(self) -> None:
        """Release the connection; in-flight jobs are not settled (see ``reclaim``)."""
