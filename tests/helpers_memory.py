"""Child-process entry points for ``tests/test_memory_channel.py``.

They are top-level functions of an importable module, so they run under the ``spawn`` start
method: the child re-imports this module and receives its arguments pickled (the channel's
queues travel as ``Process`` arguments, which is the only way they can be handed over).
"""

from __future__ import annotations

import time
from typing import Any

from services.backends.memory.channel import MemoryConnector
from services.protocol import Completion

STOP = "stop"
"""A job id that tells ``consume_forever`` to return."""


def put_then_get(connector: MemoryConnector, job_ids: list[str], results: Any) -> None:
    """Put ``job_ids`` through the channel, take them back, ack them, report what was taken."""
    queue = connector.open()
    for job_id in job_ids:
        queue.put("default", job_id, f'"{job_id}"'.encode())
    taken: list[str] = []
    deadline = time.monotonic() + 30.0
    while len(taken) < len(job_ids) and time.monotonic() < deadline:
        deliveries = queue.get(["default"], max_count=len(job_ids), timeout_s=1.0)
        queue.ack([Completion(d, d.body) for d in deliveries])
        taken += [d.job_id for d in deliveries]
    results.put(("taken", taken, queue.depth("default")))


def block_in_get(connector: MemoryConnector, ready: Any) -> None:
    """Say "ready", then block in ``get`` on an empty queue until killed."""
    queue = connector.open()
    queue.depth("default")  # one round trip first: the channel works before we block
    ready.set()
    queue.get(["default"], max_count=1, timeout_s=3600.0)


def hold_one_job(connector: MemoryConnector, results: Any) -> None:
    """Take one job, report it (id, redeliveries), then hold it (in flight) until killed."""
    queue = connector.open()
    deliveries = queue.get(["default"], max_count=1, timeout_s=30.0)
    results.put(("holding", [(d.job_id, d.redeliveries) for d in deliveries], None))
    queue.get(["nothing-ever-arrives-here"], max_count=1, timeout_s=3600.0)


def consume_forever(connector: MemoryConnector, ready: Any, results: Any) -> None:
    """Report every job taken (id and redeliveries), ack it; return on the ``STOP`` job."""
    queue = connector.open()
    queue.depth("default")
    ready.set()
    while True:
        for delivery in queue.get(["default"], max_count=1, timeout_s=3600.0):
            queue.ack([Completion(delivery)])
            if delivery.job_id == STOP:
                return
            results.put(("taken", delivery.job_id, delivery.redeliveries))


def put_twice(connector: MemoryConnector, job_id: str, results: Any) -> None:
    """Put ``job_id`` twice, as a producer does whose first reply was lost; report both flags."""
    queue = connector.open()
    first = queue.put("default", job_id, b'"first"')
    second = queue.put("default", job_id, b'"second"')
    results.put(("put", [first, second], queue.counts("default").waiting))
