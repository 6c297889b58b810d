"""``LimitInspector`` on Redis: the use of limits read from their keys (``limit_scripts``).

One pipeline: for a concurrency limit ``ZRANGEBYSCORE L h`` from now (holders by lease expiry,
so a lapsed holder not yet dropped is not counted; there are at most as many as permits, and
the command is in the backend's documented ACL where ``ZCOUNT`` is not) and ``ZCARD L w``
(parked jobs); for a rate ``ZCARD L v`` (starts reserved by parked jobs). "Now" is this host's
clock: a holder within a clock skew of its expiry may be counted either way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from services.backends.redis.connection import guarded
from services.backends.redis.limits import limit_tag
from services.limits import ConcurrencyLimit, Limit
from services.protocol.limit_usage import LimitUsage


def limit_usage(client: Any, where: str, limits: Sequence[Limit]) -> list[LimitUsage]:
    """The use of each of ``limits`` (see ``LimitInspector.limit_usage``)."""
    if not limits:
        return []
    now_ms = int(time.time() * 1000)
    with guarded("read_limits", where):
        pipe = client.pipeline(transaction=False)
        for limit in limits:
            tag = limit_tag(limit.key)
            if isinstance(limit, ConcurrencyLimit):
                pipe.zrangebyscore(f"{tag}h", f"({now_ms}", "+inf")
                pipe.zcard(f"{tag}w")
            else:
                pipe.zcard(f"{tag}v")
        replies = iter(pipe.execute())
    found = []
    for limit in limits:
        if isinstance(limit, ConcurrencyLimit):
            held, parked = len(next(replies)), int(next(replies))
            found.append(LimitUsage(limit.key, "concurrency", held, parked))
        else:
            found.append(LimitUsage(limit.key, "rate", 0, int(next(replies))))
    return found
