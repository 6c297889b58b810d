"""Feeds for the CLI tests: ``conveyor run --feed tests.feeds:small_feed``.

They call the jobs of ``--jobs tests.jobs:registry``: ``add`` and ``echo`` succeed, ``fail``
always raises, so a run of ``count`` calls ends with exactly ``expected_outcome(count)`` done
and dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Call = tuple[str, list[Any], dict[str, Any]]


def call_for(number: int) -> Call:
    """Job ``number`` of the feed: every third one fails on purpose."""
    kind = number % 3
    if kind == 0:
        return "add", [number, 1], {}
    if kind == 1:
        return "echo", [number], {"n": number}
    return "fail", [f"feed job {number} fails on purpose"], {}


def small_feed(
    count: int = 12, *, producer_index: int = 0, producer_count: int = 1
) -> Iterator[Call]:
    """This producer's share of ``count`` calls (it shards itself)."""
    for number in range(producer_index, count, producer_count):
        yield call_for(number)


def plain_feed(count: int = 12) -> Iterator[Call]:
    """All ``count`` calls; every producer runs it and keeps its stride."""
    for number in range(count):
        yield call_for(number)


def expected_outcome(count: int) -> tuple[int, int]:
    """``(done, dead-lettered)`` after a run of ``count`` calls of either feed."""
    dead = sum(1 for number in range(count) if call_for(number)[0] == "fail")
    return count - dead, dead


def slow_feed(count: int = 400) -> Iterator[Call]:
    """Jobs that keep a pool busy for a while: for tests that kill the process tree."""
    for _ in range(count):
        yield "sleep", [0.2], {}


def quick_feed(count: int = 300, seconds: float = 0.005) -> Iterator[Call]:
    """Short ``sleep`` jobs, for runs whose workers are killed while they work (all succeed)."""
    for _ in range(count):
        yield "sleep", [seconds], {}
