"""Backends the contract suite runs against: every test in this folder runs on each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from services.backends import open_queue
from services.protocol import JobQueue
from services.settings import QueueSettings

SETTINGS = QueueSettings(lease_s=2.0, max_redeliveries=3, result_ttl_s=60.0)


@dataclass
class Backend:
    """The backend under test: a root connection, and consumers opened the way children do."""

    name: str
    root: JobQueue
    opened: list[JobQueue] = field(default_factory=list)

    def consumer(self, consumer_id: str) -> JobQueue:
        queue = self.root.connector(consumer_id).open()
        self.opened.append(queue)
        return queue

    def close(self) -> None:
        for queue in self.opened:
            queue.close()
        self.root.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    found = Backend(request.param, open_queue(url, SETTINGS))
    yield found
    found.close()
