"""The registration options of issue 13: limits, uniqueness and periodic entries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.errors import JobDefinitionError
from services.limits import ConcurrencyLimit, RateLimit
from services.registry import Registry


def _noop() -> None:
    return None


def test_concurrency_limit_and_rate_become_the_jobs_limits_in_order() -> None:
    registry = Registry()
    registry.add(_noop, name="mail", rate="smtp:10/s", limit="smtp:5", concurrency=2)
    assert registry.get("mail").limits == (
        ConcurrencyLimit("job:mail", 2),
        ConcurrencyLimit("smtp", 5),
        RateLimit("smtp", 10, 1.0),
    )


@pytest.mark.parametrize(
    ("text", "count", "period_s"),
    [("100/m", 100, 60.0), ("5/10s", 5, 10.0), ("1/h", 1, 3600.0), ("3 / d", 3, 86400.0)],
)
def test_rates_parse_with_their_periods(text: str, count: int, period_s: float) -> None:
    registry = Registry()
    spec = registry.add(_noop, name="j", rate=text)
    assert spec.limits == (RateLimit("job:j", count, period_s),)
    assert spec.limits[0].interval_s == pytest.approx(period_s / count)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"limit": "smtp"},
        {"limit": "smtp:0"},
        {"limit": "bad name:2"},
        {"rate": "100"},
        {"rate": "0/s"},
        {"rate": "5/0s"},
        {"rate": "10/w"},
        {"unique_for": 0},
    ],
)
def test_bad_options_are_refused_with_the_job_named(options: dict[str, object]) -> None:
    with pytest.raises(JobDefinitionError, match="'j'"):
        Registry().add(_noop, name="j", **options)  # type: ignore[arg-type]


def test_a_shared_limit_must_have_the_same_terms_everywhere() -> None:
    registry = Registry()
    registry.add(_noop, name="a", limit="smtp:5")
    registry.add(_noop, name="b", limit="smtp:5")
    with pytest.raises(JobDefinitionError, match="already declared"):
        registry.add(_noop, name="c", limit="smtp:6")
    assert "c" not in registry


def test_unique_for_implies_unique() -> None:
    registry = Registry()
    assert registry.add(_noop, name="a", unique_for=30).unique_for_s == 30
    assert registry.get("a").unique
    assert not registry.add(_noop, name="b").unique


def test_periodic_registers_the_job_and_its_schedule() -> None:
    registry = Registry()

    @registry.periodic("*/5 * * * *", queue="cron", args=(1,), missed="catch_up", max_retries=0)
    def report(n: int) -> int:
        return n

    @registry.periodic(timedelta(seconds=30), name="poll")
    def poll() -> None:
        return None

    assert registry.get("report").max_retries == 0
    entries = {entry.name: entry for entry in registry.periodics()}
    assert entries["report"].schedule == "*/5 * * * *"
    assert (entries["report"].queue, entries["report"].args) == ("cron", (1,))
    assert entries["report"].missed == "catch_up"
    assert entries["poll"].schedule == 30.0
    assert entries["poll"].job == "poll"
    assert registry.with_result_cap(10).periodics() == registry.periodics()


@pytest.mark.parametrize(
    ("schedule", "options"),
    [(0, {}), (-1.0, {}), ("* * * * *", {"missed": "never"}), (5, {"max_catch_up": 0})],
)
def test_bad_periodic_options_are_refused(schedule: object, options: dict[str, object]) -> None:
    registry = Registry()
    with pytest.raises(JobDefinitionError):
        registry.periodic(schedule, name="p", **options)(_noop)  # type: ignore[arg-type]
    assert "p" not in registry  # nothing half-registered
