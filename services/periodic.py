"""Periodic jobs: what ``@registry.periodic`` records (the schedule itself is parsed here too).

@registry.periodic("*/5 * * * *")            # a 5-field cron expression, in UTC
def report() -> None: ...

@registry.periodic(30.0, name="poll")        # an interval, in seconds (or a timedelta)
async def poll() -> None: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from services.errors import JobDefinitionError

MISSED_POLICIES = ("skip", "catch_up")


@dataclass(frozen=True)
class PeriodicSpec:
    """A job to put on ``queue`` at each due time of ``schedule``."""

    name: str
    """The periodic entry's name (the job's name unless given): due-time job ids use it."""
    job: str
    """The registered job it enqueues."""
    schedule: str | float
    """A cron expression (str) or an interval in seconds (float)."""
    queue: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    missed: str = "skip"
    """After an outage: "skip" the missed due times, or "catch_up" (the newest
    ``max_catch_up``)."""
    max_catch_up: int = 10


def make_spec(
    name: str,
    job: str,
    schedule: str | float | timedelta,
    *,
    queue: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    missed: str,
    max_catch_up: int,
) -> PeriodicSpec:
    """A checked ``PeriodicSpec``; raises ``JobDefinitionError`` on a bad option."""
    if missed not in MISSED_POLICIES:
        raise JobDefinitionError(f"periodic {name!r}: missed must be one of {MISSED_POLICIES}")
    if max_catch_up < 1:
        raise JobDefinitionError(f"periodic {name!r}: max_catch_up must be >= 1")
    if isinstance(schedule, timedelta):
        schedule = schedule.total_seconds()
    if isinstance(schedule, bool) or not isinstance(schedule, (str, int, float)):
        raise JobDefinitionError(f"periodic {name!r}: schedule must be a cron string or seconds")
    if not isinstance(schedule, str):
        if schedule <= 0:
            raise JobDefinitionError(f"periodic {name!r}: an interval must be > 0 seconds")
        schedule = float(schedule)
    return PeriodicSpec(
        name=name,
        job=job,
        schedule=schedule,
        queue=queue,
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        missed=missed,
        max_catch_up=max_catch_up,
    )
