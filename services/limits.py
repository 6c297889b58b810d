"""Limits on when a job may start, across the whole fleet: concurrency permits and start rates.

A job declares them when it is registered::

    @registry.job(concurrency=1)                  # a mutex: one at a time, fleet-wide
    @registry.job(limit="smtp:5")                 # a named semaphore several jobs share
    @registry.job(rate="100/m")                   # at most 100 starts a minute
    @registry.job(limit="smtp:5", rate="smtp:10/s")   # both, on the shared name "smtp"

A job's own limit is keyed ``job:<name>``; a named limit is keyed by its name, so every job
naming it shares it. The backend holds and enforces them (``services.protocol.limiting``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.errors import JobDefinitionError

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_PERIODS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^(?:(?P<key>.+):)?(?P<count>\d+)\s*/\s*(?P<n>\d*)\s*(?P<unit>[smhd])$")


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``permits`` jobs holding ``key`` run at once (1: a mutex)."""

    key: str
    permits: int


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts of jobs holding ``key`` per ``period_s``, spread evenly (GCRA)."""

    key: str
    count: int
    period_s: float

    @property
    def interval_s(self) -> float:
        """The even spacing between two starts."""
        return self.period_s / self.count


Limit = ConcurrencyLimit | RateLimit


def job_key(job_name: str) -> str:
    """The key of a job's own limits."""
    return f"job:{job_name}"


def concurrency_limit(job_name: str, concurrency: int) -> ConcurrencyLimit:
    """``concurrency=N`` on a job: N permits of the job's own key."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise JobDefinitionError(
            f"job {job_name!r}: concurrency must be an integer >= 1, not {concurrency!r}"
        )
    return ConcurrencyLimit(_checked_key(job_name, job_key(job_name)), concurrency)


def parse_limit(job_name: str, text: str) -> ConcurrencyLimit:
    """``limit="smtp:5"``: 5 permits of the shared key ``smtp``."""
    key, sep, permits = text.rpartition(":")
    if not sep or not key or not permits.isdigit() or int(permits) < 1:
        raise JobDefinitionError(
            f"job {job_name!r}: limit must look like 'name:N' (N >= 1 permits), not {text!r}"
        )
    return ConcurrencyLimit(_checked_key(job_name, key), int(permits))


def parse_rate(job_name: str, text: str) -> RateLimit:
    """``rate="100/m"`` (the job's own key) or ``"smtp:100/m"`` (a shared key); the period is
    ``s``, ``m``, ``h`` or ``d``, optionally with a count of them (``"5/10s"``)."""
    match = _RATE.match(text.strip())
    if match is None or int(match["count"]) < 1 or match["n"] == "0":
        raise JobDefinitionError(
            f"job {job_name!r}: rate must look like '100/m', '5/10s' or 'name:100/m' "
            f"(a count >= 1 per s, m, h or d), not {text!r}"
        )
    key = match["key"] or job_key(job_name)
    period_s = int(match["n"] or 1) * _PERIODS_S[match["unit"]]
    return RateLimit(_checked_key(job_name, key), int(match["count"]), period_s)


def limits_of(
    job_name: str, *, concurrency: int | None, limit: str | None, rate: str | None
) -> tuple[Limit, ...]:
    """A job's limits from its registration options: concurrency permits first, rate last."""
    found: list[Limit] = []
    if concurrency is not None:
        found.append(concurrency_limit(job_name, concurrency))
    if limit is not None:
        found.append(parse_limit(job_name, limit))
    if rate is not None:
        found.append(parse_rate(job_name, rate))
    return tuple(found)


def check_consistent(known: dict[str, Limit], job_name: str, limits: tuple[Limit, ...]) -> None:
    """Refuse a shared key declared twice with different terms (which would win is unclear)."""
    for new in limits:
        old = known.get(f"{type(new).__name__}:{new.key}")
        if old is not None and old != new:
            raise JobDefinitionError(
                f"job {job_name!r}: limit {new.key!r} is already declared as {old}; "
                f"every job sharing it must declare the same terms"
            )


def remember(known: dict[str, Limit], limits: tuple[Limit, ...]) -> None:
    """Record ``limits`` for ``check_consistent``."""
    for limit in limits:
        known[f"{type(limit).__name__}:{limit.key}"] = limit


def _checked_key(job_name: str, key: str) -> str:
    if not _KEY.match(key):
        raise JobDefinitionError(
            f"job {job_name!r}: limit name {key!r} may hold only letters, digits and _ . : - "
            "(at most 100)"
        )
    return key
