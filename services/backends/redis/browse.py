"""``QueueBrowser`` on Redis: pages of a queue's waiting list and delayed set.

``LRANGE T q`` (from the head, the order FETCH takes them) and ``ZRANGE T d ... WITHSCORES``
(soonest due first; a member is ``<seq>:<element>``, its score the due time in ms): one
command per page, reads only (``keys`` has the layout).
"""

from __future__ import annotations

from typing import Any

from services.backends.redis import keys
from services.backends.redis.connection import guarded
from services.protocol.browsing import DELAYED, STATES, WAITING, Listed


def browse(
    client: Any, where: str, queue: str, state: str, *, offset: int, limit: int
) -> list[Listed]:
    """A page of ``queue``'s jobs in ``state`` (see ``QueueBrowser.browse``)."""
    if state not in STATES:
        raise ValueError(f"no job state {state!r}: one of {', '.join(STATES)}")
    found = keys.of(queue)
    last = offset + max(limit, 1) - 1
    with guarded("browse", where):
        if state == WAITING:
            return [_listed(element) for element in client.lrange(found.waiting, offset, last)]
        rows = client.zrange(found.delayed, offset, last, withscores=True)
    assert state == DELAYED
    return [_listed(member.partition(b":")[2], due_ms / 1000) for member, due_ms in rows]


def _listed(element: bytes, due_at: float | None = None) -> Listed:
    unpacked = keys.unpack_element(element)
    return Listed(unpacked.job_id, unpacked.body, due_at, unpacked.redeliveries)
