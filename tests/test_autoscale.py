"""``consumer.autoscale``: desired = ceil(backlog / K) within bounds; grow at once, shrink after a
whole window of lower backlog and beyond the tolerance band; never flap. A fixed clock: every
decision is given its ``now``."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from consumer.autoscale import AutoscaleState, Decision, Load, decide, target
from services.protocol.fleet import AutoscaleSettings

BOUNDS = AutoscaleSettings(minimum=1, maximum=8, backlog_per_worker=100, stabilization_s=60.0)


def run(
    backlog: Callable[[float], int],
    times: Iterable[float],
    *,
    settings: AutoscaleSettings = BOUNDS,
    current: int = 1,
) -> list[tuple[float, Decision]]:
    """Decisions at ``times`` for the backlog the function gives at each, state carried over."""
    found: list[tuple[float, Decision]] = []
    state: AutoscaleState | None = None
    for now in times:
        state = state or AutoscaleState.start(current, now)
        decision = decide(Load(backlog(now)), settings, state, now=now)
        found.append((now, decision))
        state = decision.state
    return found


def changes(decisions: list[tuple[float, Decision]]) -> list[tuple[float, int, int]]:
    """(time, from, to) of each decision that changed the desired total."""
    return [(t, d.previous, d.desired) for t, d in decisions if d.changed]


# -- the target -------------------------------------------------------------------------------
def test_the_target_is_the_backlog_over_k_rounded_up() -> None:
    assert target(Load(101), BOUNDS) == (2, "backlog 101 / 100 per worker -> 2")
    assert target(Load(800), BOUNDS)[0] == 8


def test_the_target_is_capped_at_the_maximum_and_says_so() -> None:
    wanted, why = target(Load(1200), BOUNDS)
    assert wanted == 8
    assert why == "backlog 1,200 / 100 per worker -> 12, capped at max 8"


def test_the_target_is_raised_to_the_minimum_and_says_so() -> None:
    settings = AutoscaleSettings(minimum=2, maximum=8, backlog_per_worker=100)
    assert target(Load(0), settings) == (2, "backlog 0 / 100 per worker -> 0, raised to min 2")


def test_scaling_to_zero_waits_for_running_jobs() -> None:
    settings = AutoscaleSettings(minimum=0, maximum=8, backlog_per_worker=100)
    wanted, why = target(Load(0, running=3), settings)
    assert wanted == 1 and "1 while 3 job(s) still run" in why
    assert target(Load(0), settings)[0] == 0


# -- growing ----------------------------------------------------------------------------------
def test_growth_is_immediate_and_explained() -> None:
    # Given a group at 4, When the backlog jumps to 1,200 (draining at 40 jobs/s)
    state = AutoscaleState.start(4, now=0.0)
    decision = decide(Load(1200, running=4, throughput=40.0), BOUNDS, state, now=0.5)
    # Then it grows to the maximum at once, and the reason says how and why
    assert (decision.previous, decision.desired, decision.changed) == (4, 8, True)
    assert decision.reason.startswith("backlog 1,200 / 100 per worker -> 12, capped at max 8")
    assert "grow 4 -> 8 at once" in decision.reason
    assert "40.0 jobs/s" in decision.reason


def test_a_lowered_maximum_takes_effect_at_once() -> None:
    state = AutoscaleState.start(10, now=0.0)
    decision = decide(Load(1000), BOUNDS, state, now=1.0)
    assert decision.desired == 8
    assert "above max 8" in decision.reason


# -- shrinking --------------------------------------------------------------------------------
def test_a_shrink_waits_for_a_whole_window_of_lower_backlog() -> None:
    # Given a group grown to 8, When the backlog falls to 200 (target 2) at t=10
    decisions = run(lambda t: 1000 if t < 10 else 200, range(0, 120))
    # Then it holds 8 until the window since the last high reading (t=9) has passed
    assert changes(decisions) == [(0, 1, 8), (69, 8, 2)]
    holding = dict(decisions)[40]
    assert holding.desired == 8
    assert "holding 8: a shrink waits for 60 s of lower backlog (29 s left)" in holding.reason
    assert "shrink 8 -> 2 after 60 s" in dict(decisions)[69].reason


def test_a_shrink_goes_to_the_highest_target_of_the_window() -> None:
    # Given 8 processes, a backlog of 600 (target 6) until t=10, then 200 (target 2)
    decisions = run(lambda t: 600 if t <= 10 else 200, range(0, 200), current=8)
    # Then after a window it goes to 6 (the window's highest), and to 2 once the 6s left it
    assert changes(decisions) == [(60, 8, 6), (70, 6, 2)]


def test_a_new_policy_observes_a_whole_window_before_it_shrinks() -> None:
    decisions = run(lambda t: 0, range(0, 100), current=5)
    assert changes(decisions) == [(60, 5, 1)]
    assert "(30 s left)" in dict(decisions)[30].reason


def test_a_gap_between_decisions_restarts_the_observation() -> None:
    # Given decisions every 5 minutes (longer than the window) with a low backlog
    decisions = run(lambda t: 0, [0, 300, 600, 630, 660, 661], current=5)
    # Then no single reading after a gap shrinks; a whole observed window does
    assert changes(decisions) == [(660, 5, 1)]


def test_a_shrink_within_the_tolerance_band_does_not_happen() -> None:
    settings = AutoscaleSettings(
        minimum=1, maximum=40, backlog_per_worker=100, stabilization_s=60.0, tolerance=0.1
    )
    # Given 20 processes, When the target stays at 19 (5% lower) / Then it holds, saying why
    within = run(lambda t: 1900, range(0, 300), settings=settings, current=20)
    assert changes(within) == []
    assert "holding 20: 19 is within 10%" in within[-1][1].reason
    # When it stays at 17 (15% lower) / Then it shrinks after the window
    beyond = run(lambda t: 1700, range(0, 300), settings=settings, current=20)
    assert changes(beyond) == [(60, 20, 17)]


def test_an_idle_group_scales_to_zero_when_the_minimum_allows() -> None:
    settings = AutoscaleSettings(minimum=0, maximum=8, backlog_per_worker=10, stabilization_s=1.0)
    decisions = run(lambda t: 50 if t < 1 else 0, [i / 10 for i in range(40)], settings=settings)
    assert [(d.previous, d.desired) for _, d in decisions if d.changed] == [(1, 5), (5, 0)]


def test_a_zero_window_shrinks_at_once() -> None:
    settings = AutoscaleSettings(minimum=1, maximum=8, backlog_per_worker=100, stabilization_s=0)
    decisions = run(lambda t: 800 if t < 3 else 100, range(6), settings=settings)
    assert changes(decisions) == [(0, 1, 8), (3, 8, 1)]


# -- no flapping ------------------------------------------------------------------------------
def test_an_oscillating_backlog_grows_once_and_never_flaps() -> None:
    # Given a backlog alternating between 0 and 1,000 every 10 s for ten minutes
    decisions = run(lambda t: 1000 if int(t) // 10 % 2 == 0 else 0, range(600))
    # Then the group grew once and held; every decision says why
    assert changes(decisions) == [(0, 1, 8)]
    assert all(d.reason for _, d in decisions)


def test_a_backlog_hovering_on_a_boundary_does_not_flap() -> None:
    # Given a backlog hovering around 400 (targets 4 and 5), sampled twice a second
    rng = random.Random(7)
    decisions = run(lambda t: 400 + rng.randint(-30, 30), [i / 2 for i in range(1200)], current=4)
    # Then it went to 5 once, within the first seconds, and stayed there
    [(when, previous, desired)] = changes(decisions)
    assert (previous, desired) == (4, 5) and when < 5


@pytest.mark.parametrize("seed", range(5))
def test_no_shrink_ever_follows_a_growth_within_the_window(seed: int) -> None:
    # Given a random-walk backlog, decisions at irregular times
    rng = random.Random(seed)
    level = [500]

    def walk(_: float) -> int:
        level[0] = max(0, level[0] + rng.randint(-60, 60))
        return level[0]

    times: list[float] = []
    now = 0.0
    for _ in range(3000):
        now += rng.uniform(0.2, 2.0)
        times.append(now)
    decisions = run(walk, times)
    # Then every shrink comes at least a window after the last growth, and a whole window of
    # lower targets after the last reading that called for the size it left
    last_growth = float("-inf")
    for t, previous, desired in changes(decisions):
        if desired > previous:
            last_growth = t
        else:
            assert t - last_growth >= BOUNDS.stabilization_s, (t, previous, desired)
    assert all(BOUNDS.minimum <= d.desired <= BOUNDS.maximum for _, d in decisions)
