"""The backend under test, as every contract test receives it (the ``backend`` fixture)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.protocol import Backend
from services.settings import QueueSettings

CONTRACT_SETTINGS = QueueSettings(lease_s=2.0, max_redeliveries=3, result_ttl_s=60.0)
"""The settings the suite expects the backend to be opened with (tests rely on these values)."""


@dataclass
class BackendUnderTest:
    """A root connection, and the consumers a test opened the way child processes do."""

    name: str
    root: Backend
    opened: list[Backend] = field(default_factory=list)

    def consumer(self, consumer_id: str) -> Backend:
        """A connection consuming as ``consumer_id``, opened through ``root.connector``."""
        queue = self.root.connector(consumer_id).open()
        self.opened.append(queue)
        return queue

    def close(self) -> None:
        """Close every consumer this test opened, then the root."""
        for queue in self.opened:
            queue.close()
        self.root.close()
