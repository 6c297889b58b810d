"""``consumer.fleet_split``: a group's total split between its supervisors, the same everywhere."""

from __future__ import annotations

import random

import pytest

from consumer.fleet_split import split


def test_an_even_total_is_split_evenly() -> None:
    assert split(6, {"b": 8, "a": 8}).shares == {"a": 3, "b": 3}


def test_the_remainder_goes_to_the_first_supervisors_by_id() -> None:
    assert split(7, {"c": 8, "a": 8, "b": 8}).shares == {"a": 3, "b": 2, "c": 2}


def test_a_supervisor_never_gets_more_than_its_maximum() -> None:
    # Given a small supervisor next to a big one / Then the big one takes what the small cannot
    assert split(10, {"a": 2, "b": 8}).shares == {"a": 2, "b": 8}
    assert split(9, {"a": 2, "b": 4, "c": 10}).shares == {"a": 2, "b": 4, "c": 3}


def test_the_total_is_capped_by_the_sum_of_the_maxima_and_says_so() -> None:
    # When a group wants more than its supervisors may run
    found = split(20, {"a": 4, "b": 4})
    # Then each runs its maximum, and the split says why the total falls short
    assert found.shares == {"a": 4, "b": 4}
    assert (found.total, found.capped) == (8, True)
    assert "wants 20" in found.note and "at most 8" in found.note


def test_a_total_within_the_maxima_is_not_capped() -> None:
    found = split(8, {"a": 4, "b": 4})
    assert (found.total, found.capped, found.note) == (8, False, "")


def test_zero_gives_every_supervisor_nothing() -> None:
    assert split(0, {"a": 4, "b": 4}).shares == {"a": 0, "b": 0}


def test_fewer_processes_than_supervisors_leaves_the_last_ones_idle() -> None:
    assert split(1, {"b": 4, "a": 4, "c": 4}).shares == {"a": 1, "b": 0, "c": 0}


def test_no_live_supervisor_runs_nothing_and_says_so() -> None:
    found = split(3, {})
    assert (found.shares, found.total) == ({}, 0)
    assert "no supervisor" in found.note


def test_negative_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        split(-1, {"a": 1})
    with pytest.raises(ValueError):
        split(1, {"a": -1})


def test_every_split_is_full_fair_and_independent_of_input_order() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        # Given a random group and total
        maxima = {f"s{i:02d}": rng.randint(0, 9) for i in range(rng.randint(1, 7))}
        wanted = rng.randint(0, 60)
        found = split(wanted, maxima)
        shuffled = dict(rng.sample(sorted(maxima.items()), len(maxima)))
        # Then it fills min(wanted, capacity), respects each maximum, is the same in any order
        assert sum(found.shares.values()) == found.total == min(wanted, sum(maxima.values()))
        assert all(0 <= found.shares[s] <= maxima[s] for s in maxima)
        assert split(wanted, shuffled) == found
        assert list(found.shares) == sorted(maxima)
        # And supervisors with room differ by at most one, the earlier ids having more
        open_shares = [found.shares[s] for s in sorted(maxima) if found.shares[s] < maxima[s]]
        assert max(open_shares, default=0) - min(open_shares, default=0) <= 1
        assert open_shares == sorted(open_shares, reverse=True)
