"""How much to fetch and from which queues first: pure decisions of the worker's fetch step.

Paused queues (``conveyor pause``) reach a worker process as a bit mask over its queue list,
written by its supervisor into its stats block (``Field.PAUSED``): bit ``i`` set means
``queues[i]`` is paused. A stats slot is a double, exact for integers up to 2**53, so the
first ``PAUSABLE`` queues of a worker can be paused (a longer list keeps the rest running).
"""

from __future__ import annotations

from collections.abc import Collection

FAIR_EVERY = 10
"""One fetch in this many starts below the highest-priority queue (no queue starves)."""

MAX_EXTRA = 128
"""Most jobs a worker holds beyond its slots when it grows its prefetch (deep queue)."""
QUICK_JOB_S = 0.002
"""Jobs that run shorter than this may grow the prefetch (at most ``MAX_EXTRA`` of them held,
so a worker hoards no more than ~0.25 s of other workers' work per slot)."""


PAUSABLE = 53
"""How many queues of a worker's list the pause mask covers (the bits of a double's mantissa)."""


def pause_mask(queues: tuple[str, ...], paused: Collection[str]) -> int:
    """The mask that marks the ``paused`` queues of ``queues`` (the first ``PAUSABLE`` only)."""
    return sum(1 << i for i, name in enumerate(queues[:PAUSABLE]) if name in paused)


def open_queues(queues: tuple[str, ...], mask: int) -> tuple[str, ...]:
    """``queues`` without those ``mask`` marks paused, in their order."""
    if not mask:
        return queues
    return tuple(name for i, name in enumerate(queues) if not mask >> i & 1)


def queue_order(queues: tuple[str, ...], fetch_number: int) -> tuple[str, ...]:
    """Earlier queues first; but every FAIR_EVERY-th fetch starts one queue further down,
    so a busy high-priority queue slows lower ones down without starving them."""
    if len(queues) < 2 or fetch_number % FAIR_EVERY:
        return queues
    shift = (fetch_number // FAIR_EVERY) % len(queues) or 1
    return queues[shift:] + queues[:shift]


def next_extra(extra: int, prefetch: int, *, full: bool, quick: bool, slow: bool) -> int:
    """Jobs to fetch beyond the slots next time: more while the queue is deep and jobs quick.

    A fetch that came back ``full``, after only ``quick`` jobs settled since the previous one,
    doubles the extra jobs taken (up to ``MAX_EXTRA``); a short fetch or a ``slow`` job falls
    back to ``prefetch``. Slow jobs never grow it, so a worker does not hoard jobs that other
    workers could run; prefetch 0 turns it off.
    """
    if not full or slow or prefetch == 0:
        return prefetch
    if quick:
        return min(extra * 2, max(MAX_EXTRA, prefetch))
    return extra
