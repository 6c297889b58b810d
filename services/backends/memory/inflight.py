"""The memory backend's deliveries in flight, by receipt, and the fencing of released ones.

A receipt taken away by ``reclaim`` is remembered (the newest ``MAX_FENCED``), so a late
settlement of it is rejected and counted as fenced; any other receipt no longer in flight was
settled already by its owner, and settling it again (a retried call) is an accepted no-op.

Not thread-safe: ``MemoryState`` calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict

from services.protocol import Delivery

MAX_FENCED = 100_000
"""Released receipts remembered at most; an older one settled late counts as a repeat."""


class InFlight:
    """Deliveries handed to consumers and not settled yet."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, Delivery]] = {}
        self._fenced: OrderedDict[str, None] = OrderedDict()

    def add(self, consumer_id: str, delivery: Delivery) -> None:
        """``delivery`` now belongs to ``consumer_id``."""
        self._held[delivery.receipt] = (consumer_id, delivery)

    def owner(self, receipt: str) -> str | None:
        """Who holds ``receipt``; None when it is not in flight."""
        entry = self._held.get(receipt)
        return None if entry is None else entry[0]

    def settle(self, receipt: str) -> Delivery | None:
        """Take ``receipt`` out of flight; None if it was not in flight (settled or fenced)."""
        entry = self._held.pop(receipt, None)
        return None if entry is None else entry[1]

    def fenced(self, receipt: str) -> bool:
        """Whether ``receipt`` was taken from its consumer by ``reclaim``."""
        return receipt in self._fenced

    def take_all(self, consumer_id: str) -> list[Delivery]:
        """Take every delivery of ``consumer_id`` out of flight and fence its receipts."""
        mine = [d for owner, d in self._held.values() if owner == consumer_id]
        for delivery in mine:
            del self._held[delivery.receipt]
            self._fenced[delivery.receipt] = None
        while len(self._fenced) > MAX_FENCED:  # bounded: the oldest are forgotten first
            self._fenced.popitem(last=False)
        return mine
