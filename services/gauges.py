"""Cheap gauges of a queue that its counters alone do not give: jobs per second, oldest age.

``done_rate``: the backends keep a small ring of ``(time, done total)`` samples per queue,
newest first, added by the readers of the rate (``conveyor status``, ``GET /v1/fleet``) at most
once per ``SAMPLE_SPACING_S``; the settle path (the hot one) writes nothing more. The rate is
the done total's growth since the oldest sample inside the window, so it needs an earlier
reader: the first look after a quiet spell answers None ("not known yet"), a ``--watch`` or a
dashboard that polls keeps it current. ``RING_SIZE`` samples spaced at least a second apart
always reach back over a minute.

``enqueued_at``: the producer's stamp inside a job body (``services.codec``), read without
building the job, for the age of the oldest waiting job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

SAMPLE_SPACING_S = 1.0
"""A reader adds a sample only when the newest is at least this old (a busy poller cannot
crowd the minute out of the ring)."""
RING_SIZE = 90
"""Samples kept per queue (90 spaced >= 1 s apart cover more than a minute)."""
RATE_WINDOW_S = 60.0
"""The window of ``conveyor status``'s jobs/s."""

Sample = tuple[float, int]
"""(time in seconds by the backend's clock, the queue's done total then)."""


def should_sample(samples: Sequence[Sample], now: float) -> bool:
    """True when the ring (newest first) has no sample ``SAMPLE_SPACING_S`` old or newer."""
    return not samples or now - samples[0][0] >= SAMPLE_SPACING_S


def rate_from(
    samples: Sequence[Sample], now: float, done: int, window_s: float = RATE_WINDOW_S
) -> float | None:
    """Jobs done per second since the oldest sample inside ``window_s`` that is at least
    ``SAMPLE_SPACING_S`` old; None when there is none (nobody looked within the window)."""
    base: Sample | None = None
    for taken_at, total in samples:  # newest first
        age = now - taken_at
        if age > window_s:
            break
        if age >= SAMPLE_SPACING_S:
            base = (taken_at, total)
    if base is None:
        return None
    return max(0, done - base[1]) / (now - base[0])


def enqueued_at(body: bytes) -> float | None:
    """The ``enqueued_at`` stamp of a job body; None when the body is not a job's."""
    try:
        record = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stamp = record.get("enqueued_at") if isinstance(record, dict) else None
    return float(stamp) if isinstance(stamp, int | float) else None
