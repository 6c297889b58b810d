"""Periodic jobs: what ``@registry.periodic`` records, their schedules, and which due times fire.

@registry.periodic("*/5 * * * *")            # a 5-field cron expression, in UTC
def report() -> None: ...

@registry.periodic(30.0, name="poll")        # an interval, in seconds (or a timedelta)
async def poll() -> None: ...

**Due times** are instants every scheduler computes alike, without talking to the others: a cron
expression's matching minutes (UTC, ``cronsim``), an interval's multiples of itself since the
Unix epoch (so 60.0 is due at every whole minute, whoever started when). Each due time is fired
as the job ``cron:<name>:<due, integer epoch seconds>`` (``job_id_for``; intervals are at least
1 s, so two due times never share an id). Times are this host's wall clock (``time.time``).

**Which due times fire** (``plan_firing``, a pure function; the scheduler acts on it). The
backend remembers the newest due time fired per entry (``ScheduleStore.mark_fired``):

* first sight of an entry (nothing remembered): nothing fires; "now" is remembered, and the
  first due time after it is the first to fire (a new entry never fires for its past);
* due times after the remembered one and at most ``grace_s`` old are *late*, not missed: all of
  them fire, oldest first (a leader that dies hands over within its lease, well inside
  ``grace_s``, so a failover loses no due time);
* older ones are *missed* (every scheduler was down): ``missed="skip"`` fires none of them
  (they are logged); ``missed="catch_up"`` fires the newest ``max_catch_up`` of them, oldest
  first, then the late ones.

A restart fires nothing at or before the remembered due time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

from services.errors import JobDefinitionError
from services.names import InvalidNameError, check_job_id

MISSED_POLICIES = ("skip", "catch_up")
MIN_INTERVAL_S = 1.0
"""The shortest interval: due-time job ids count whole seconds."""
GRACE_S = 60.0
"""Due times at most this old fire late rather than count as missed (``plan_firing``)."""


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
        if not schedule >= MIN_INTERVAL_S:
            raise JobDefinitionError(
                f"periodic {name!r}: an interval must be >= {MIN_INTERVAL_S:g} second"
            )
        schedule = float(schedule)
    try:
        schedule_of(schedule)
        check_job_id(job_id_for(name, 0.0))
    except (ValueError, InvalidNameError) as exc:
        raise JobDefinitionError(f"periodic {name!r}: {exc}") from None
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


class Schedule:
    """When an entry is due: ``due_times`` in a window, ``next_after`` an instant."""

    text: str
    """How ``conveyor cron list`` shows it."""

    def due_times(self, after: float, upto: float, *, newest: int | None = None) -> list[float]:
        """Due times in ``(after, upto]``, oldest first; with ``newest``, only the newest that
        many (found without walking the older ones)."""
        raise NotImplementedError

    def next_after(self, when: float) -> float:
        """The first due time strictly after ``when``."""
        raise NotImplementedError


class IntervalSchedule(Schedule):
    """Every ``seconds``, at the multiples of it since the epoch; computed in whole ms."""

    def __init__(self, seconds: float) -> None:
        self.step_ms = round(seconds * 1000)
        self.text = f"every {seconds:g}s"

    def due_times(self, after: float, upto: float, *, newest: int | None = None) -> list[float]:
        first = round(after * 1000) // self.step_ms + 1
        last = round(upto * 1000) // self.step_ms
        if newest is not None:
            first = max(first, last - newest + 1)
        return [k * self.step_ms / 1000 for k in range(first, last + 1)]

    def next_after(self, when: float) -> float:
        return (round(when * 1000) // self.step_ms + 1) * self.step_ms / 1000


class CronSchedule(Schedule):
    """A 5-field cron expression in UTC (``cronsim``)."""

    def __init__(self, expression: str) -> None:
        if len(expression.split()) != 5:
            raise ValueError(f"a cron expression has 5 fields, not {expression!r}")
        try:
            CronSim(expression, _utc(0.0))
        except CronSimError as exc:
            raise ValueError(f"bad cron expression {expression!r}: {exc}") from None
        self.expression = expression
        self.text = expression

    def due_times(self, after: float, upto: float, *, newest: int | None = None) -> list[float]:
        if newest is not None:  # walk back from ``upto``: a long outage costs nothing more
            start = _utc(math.floor(upto) + 1)  # reverse ticks are strictly before a whole second
            found: list[float] = []
            for tick in CronSim(self.expression, start, reverse=True):
                if tick.timestamp() <= after or len(found) == newest:
                    break
                found.append(tick.timestamp())
            return found[::-1]
        times = []
        for tick in CronSim(self.expression, _utc(after)):
            if tick.timestamp() > upto:
                break
            times.append(tick.timestamp())
        return times

    def next_after(self, when: float) -> float:
        return next(CronSim(self.expression, _utc(when))).timestamp()


def _utc(when: float) -> datetime:
    return datetime.fromtimestamp(when, UTC)


def schedule_of(schedule: str | float) -> Schedule:
    """The ``Schedule`` a spec's ``schedule`` field stands for; ValueError if it is bad."""
    if isinstance(schedule, str):
        return CronSchedule(schedule)
    return IntervalSchedule(schedule)


def schedule_group(specs: Sequence[PeriodicSpec]) -> str:
    """The name of a set of periodic entries (16 hex of a SHA-256 of their sorted names):
    schedulers loading the same entries share one lease, others lead their own set."""
    names = "\n".join(sorted(spec.name for spec in specs))
    return hashlib.sha256(names.encode()).hexdigest()[:16]


def job_id_for(name: str, due: float) -> str:
    """The id of the job fired for ``name``'s due time ``due``: the same on every host."""
    return f"cron:{name}:{math.floor(due)}"


@dataclass(frozen=True)
class Firing:
    """What one scheduler turn does for one entry (``plan_firing``)."""

    fire: tuple[float, ...] = ()
    """Due times to fire now, oldest first."""
    mark: float | None = None
    """What to remember as fired once they are (None: nothing changes)."""
    skipped: tuple[float, float] | None = None
    """``(after, upto]``: the window of missed due times left out, if any may be."""


def plan_firing(
    spec: PeriodicSpec, *, last: float | None, now: float, grace_s: float = GRACE_S
) -> Firing:
    """Which due times of ``spec`` fire at ``now``, given the newest one fired (``last``);
    the rules are in the module docstring."""
    if last is None:
        return Firing(mark=now)
    schedule = schedule_of(spec.schedule)
    edge = max(last, now - grace_s)
    late = schedule.due_times(edge, now)
    missed: list[float] = []
    skipped = None
    if edge > last:
        if spec.missed == "catch_up":
            missed = schedule.due_times(last, edge, newest=spec.max_catch_up)
        skipped = (last, edge)
    fire = (*missed, *late)
    if fire:
        return Firing(fire, mark=fire[-1], skipped=skipped)
    return Firing(mark=edge if edge > last else None, skipped=skipped)
