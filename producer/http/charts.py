"""The dashboard's chart series, built from history buckets (``services.protocol.history``).

Pure functions, inputs in, series out: ``series`` lays a window of buckets on a regular time
axis (a bucket nobody sampled is a gap: ``None``, which the chart draws as a break) and turns
the cumulative totals into rates: jobs done (and dead) per second in a bucket are the growth of
the total from this bucket's first look to the next bucket's, and for the bucket in progress,
to the totals read now. A total that shrank (Redis restarted empty) counts as 0, not negative.
``percentiles`` turns the fleet's latency buckets into enqueue-to-start p50/p95/p99 per bucket
(upper bounds of the workers' histogram buckets, ~12% wide); a bucket where no job started is
a gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.protocol.history import Bucket, LatencyBucket, Resolution, Snapshot
from services.stats import BUCKETS, percentile_s

Point = float | None
RATE_MIN_AGE_S = 60.0
RATE_MAX_AGE_S = 180.0
PERCENTILES = {"start_p50_s": 0.5, "start_p95_s": 0.95, "start_p99_s": 0.99}


def axis(resolution: Resolution, now: float, points: int) -> list[int]:
    """The starts of the ``points`` buckets up to the one holding ``now``, oldest first."""
    last = resolution.bucket(now)
    return [last - resolution.width_s * (points - 1 - i) for i in range(points)]


def rates(
    buckets: Sequence[Bucket], width_s: int, now: float, current: Snapshot | None
) -> dict[int, tuple[float, float]]:
    """Per bucket start: (done per s, dead per s), where the next look is known."""
    found: dict[int, tuple[float, float]] = {}
    for i, (start, snap) in enumerate(buckets):
        if i + 1 < len(buckets) and buckets[i + 1][0] == start + width_s:
            after, span = buckets[i + 1][1], float(width_s)
        elif current is not None and start <= now < start + width_s:
            after, span = current, max(1.0, now - start)
        else:
            continue
        found[start] = (_growth(snap.done, after.done, span), _growth(snap.dead, after.dead, span))
    return found


def _growth(before: int, after: int, span_s: float) -> float:
    return max(0, after - before) / span_s


def series(
    histories: Mapping[str, Sequence[Bucket]],
    resolution: Resolution,
    *,
    now: float,
    points: int,
    current: Mapping[str, Snapshot],
) -> dict[str, Any]:
    """The chart of ``histories`` (summed over their queues) on the last ``points`` buckets:
    ``t`` (bucket starts), ``done_per_s``, ``dead_per_s``, ``backlog`` (waiting + delayed, the
    bucket's largest), ``in_flight``, ``latency_s`` (the oldest waiting job's age, largest)."""
    t = axis(resolution, now, points)
    index = {start: i for i, start in enumerate(t)}
    names = ("done_per_s", "dead_per_s", "backlog", "in_flight", "latency_s")
    out: dict[str, list[Point]] = {name: [None] * points for name in names}
    for queue, buckets in histories.items():
        per_s = rates(buckets, resolution.width_s, now, current.get(queue))
        for start, snap in buckets:
            i = index.get(start)
            if i is None:
                continue
            done, dead = per_s.get(start, (None, None))
            _add(out["done_per_s"], i, done)
            _add(out["dead_per_s"], i, dead)
            _add(out["backlog"], i, float(snap.waiting + snap.delayed))
            _add(out["in_flight"], i, float(snap.in_flight))
            old = out["latency_s"][i]
            latency = snap.oldest_waiting_ms / 1000
            out["latency_s"][i] = latency if old is None else max(old, latency)
    return {"resolution": resolution.name, "width_s": resolution.width_s, "t": t, **out}


def _add(values: list[Point], i: int, value: float | None) -> None:
    if value is not None:
        values[i] = value + (values[i] or 0.0)


def recent_rate(buckets: Sequence[Bucket], now: float, done: int) -> float | None:
    """Jobs done per second over about the last minute or two: from the first look of the
    newest bucket that began at least ``RATE_MIN_AGE_S`` ago (and at most ``RATE_MAX_AGE_S``)
    to the total ``done`` now; None when no such bucket was sampled."""
    for start, snap in reversed(buckets):
        age = now - start
        if RATE_MIN_AGE_S <= age <= RATE_MAX_AGE_S:
            return _growth(snap.done, done, age)
        if age > RATE_MAX_AGE_S:
            break
    return None


def percentiles(
    buckets: Sequence[LatencyBucket], resolution: Resolution, *, now: float, points: int
) -> dict[str, list[Point]]:
    """Enqueue-to-start ``start_p50_s``, ``start_p95_s``, ``start_p99_s`` (the fleet's) on the
    axis of ``series``; None where no job started in a bucket."""
    index = {start: i for i, start in enumerate(axis(resolution, now, points))}
    out: dict[str, list[Point]] = {name: [None] * points for name in PERCENTILES}
    for start, histogram in buckets:
        i = index.get(start)
        if i is None:
            continue
        dense = [float(histogram.get(b, 0)) for b in range(BUCKETS)]
        for name, fraction in PERCENTILES.items():
            out[name][i] = percentile_s(dense, fraction)
    return out
