"""The autoscale policy of a group: how many worker processes for this backlog, now. Pure.

``decide(load, settings, state, now=...)`` returns a ``Decision``: the desired total, a reason
for people, and the state to pass to the next call. The rules (KEDA's ``listLength``, with the
Kubernetes HPA's scale-down stabilization)::

    target = ceil(backlog / backlog_per_worker), within [minimum, maximum]
             (1 rather than 0 while jobs still run: scaling to zero waits for them)
    target above current           -> grow to it at once
    current above maximum          -> down to maximum at once (the bounds were lowered)
    target below current           -> shrink only when every target of the last
                                      ``stabilization_s`` was below current, and that long has
                                      been observed; then to the highest of those targets,
                                      and only if that is more than ``tolerance`` below current

So a backlog that oscillates grows the group once and then holds it: a shrink needs a whole
window of lower targets, and each high point of the oscillation restarts the window. Calls are
expected every second or so; a gap longer than the window (and than ``GAP_S``, so that a window
shorter than the calls' spacing still sees two readings) restarts the observation (a shrink is
never decided from one reading after a pause).

The state keeps the sliding maximum of the window's targets as a short tuple of (time, target)
with targets strictly decreasing (a newer, higher target makes the older ones irrelevant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from services.protocol.fleet import AutoscaleSettings

GAP_S = 5.0
"""Calls this far apart or closer are one unbroken observation, whatever the window."""


@dataclass(frozen=True)
class Load:
    """What the autoscaler sees of a group's queues at one moment."""

    backlog: int
    """Jobs waiting on the group's queues (ready to run; KEDA's list length)."""
    running: int = 0
    """Jobs running now."""
    throughput: float = 0.0
    """Jobs settled per second, over the last minute."""


@dataclass(frozen=True)
class AutoscaleState:
    """What the policy remembers between two decisions."""

    current: int
    """The group's desired total after the last decision."""
    observed_since: float
    """Start of the unbroken run of observations (a shrink needs a whole window of them)."""
    last_seen: float
    peaks: tuple[tuple[float, int], ...] = ()
    """(time, target) within the window, targets strictly decreasing: the sliding maximum."""

    @classmethod
    def start(cls, current: int, now: float) -> AutoscaleState:
        """The state of a policy that begins now, with the group at ``current``."""
        return cls(current=current, observed_since=now, last_seen=now)


@dataclass(frozen=True)
class Decision:
    """One decision: the group's desired total, why, and the state for the next call."""

    desired: int
    previous: int
    reason: str
    state: AutoscaleState

    @property
    def changed(self) -> bool:
        return self.desired != self.previous


def target(load: Load, settings: AutoscaleSettings) -> tuple[int, str]:
    """The total this load calls for, within the bounds, and how it was reached."""
    per = settings.backlog_per_worker
    raw = math.ceil(load.backlog / per)
    how = f"backlog {load.backlog:,} / {per:,} per worker -> {raw}"
    wanted = raw
    if raw == 0 and load.running > 0:
        wanted = 1
        how += f", 1 while {load.running:,} job(s) still run"
    if wanted > settings.maximum:
        return settings.maximum, f"{how}, capped at max {settings.maximum}"
    if wanted < settings.minimum:
        return settings.minimum, f"{how}, raised to min {settings.minimum}"
    return wanted, how


def decide(
    load: Load, settings: AutoscaleSettings, state: AutoscaleState, *, now: float
) -> Decision:
    """The group's desired total for ``load`` at ``now``, after ``state`` (see the module)."""
    goal, how = target(load, settings)
    window = settings.stabilization_s
    state = _observe(state, goal, now=now, window=window)
    current = state.current
    if goal > current:
        action = f"grow {current} -> {goal} at once"
        return _decided(state, goal, f"{how}; {action}{_drain(load)}")
    if current > settings.maximum:
        action = f"{current} is above max {settings.maximum}: down to it at once"
        return _decided(state, settings.maximum, f"{how}; {action}")
    if goal == current:
        return _decided(state, current, f"{how}; steady at {current}")
    return _shrink(state, settings, how=how, now=now)


def _shrink(
    state: AutoscaleState, settings: AutoscaleSettings, *, how: str, now: float
) -> Decision:
    current, window = state.current, settings.stabilization_s
    last_high = max((t for t, goal in state.peaks if goal >= current), default=None)
    if last_high is not None or now - state.observed_since < window:
        wait_from = state.observed_since if last_high is None else last_high
        left = max(0.0, wait_from + window - now)
        action = f"holding {current}: a shrink waits for {window:g} s of lower backlog"
        return _decided(state, current, f"{how}; {action} ({left:.0f} s left)")
    highest = state.peaks[0][1]  # the window's highest target, below current
    if highest >= current * (1 - settings.tolerance):
        band = f"{settings.tolerance:.0%}"
        return _decided(state, current, f"{how}; holding {current}: {highest} is within {band}")
    action = f"shrink {current} -> {highest} after {window:g} s of lower backlog"
    return _decided(state, highest, f"{how}; {action}")


def _observe(state: AutoscaleState, goal: int, *, now: float, window: float) -> AutoscaleState:
    """``state`` with the target seen at ``now`` added to the window."""
    gap = now - state.last_seen
    observed_since = now if gap > max(window, GAP_S) else state.observed_since
    kept = [(t, g) for t, g in state.peaks if t > now - window and g > goal]
    return replace(state, observed_since=observed_since, last_seen=now, peaks=(*kept, (now, goal)))


def _decided(state: AutoscaleState, desired: int, reason: str) -> Decision:
    return Decision(desired, state.current, reason, replace(state, current=desired))


def _drain(load: Load) -> str:
    if load.throughput <= 0 or load.backlog <= 0:
        return ""
    drain_s = load.backlog / load.throughput
    return f" (at {load.throughput:.1f} jobs/s the backlog takes ~{drain_s:.0f} s)"
