"""Scraping a ``/metrics`` endpoint in the tests, and reading the exposition with
``prometheus_client``'s own parser (so what the tests read is what Prometheus would)."""

from __future__ import annotations

import itertools
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.protocol import QueueCounts

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_SERVING = re.compile(r"serving metrics on (http://\S+/metrics)")
_MONOTONIC = ("_total", "_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples: (sample name, sorted labels) -> value."""

    samples: dict[SampleKey, float]

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(
            value
            for (sample, found), value in self.samples.items()
            if sample == name and set(labels.items()) <= set(found)
        )

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of ``name``'s samples."""
        return [dict(found) for sample, found in self.samples if sample == name]


def parse(text: str) -> Scrape:
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(samples)


def scrape(url: str, timeout_s: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        assert response.status == 200
        return parse(response.read().decode())


def scrape_until(url: str, done: Callable[[Scrape], bool], timeout_s: float = 30.0) -> list[Scrape]:
    """Scrape until ``done`` holds for a scrape; every scrape made, in order (last: done)."""
    seen: list[Scrape] = []
    deadline = time.monotonic() + timeout_s
    while not seen or not done(seen[-1]):
        if time.monotonic() > deadline:
            pytest.fail(f"metrics never reached the expected state; last scrape: {seen[-1]}")
        if seen:
            time.sleep(0.05)
        seen.append(scrape(url))
    return seen


def backwards(scrapes: list[Scrape]) -> list[str]:
    """Counter and histogram samples that went down from one scrape to the next."""
    found = []
    for before, after in itertools.pairwise(scrapes):
        for key, value in before.samples.items():
            name = key[0]
            if name.endswith(_MONOTONIC) and after.samples.get(key, 0.0) < value:
                found.append(f"{key}: {value} -> {after.samples.get(key)}")
    return found


def served_url(log_path: Path, timeout_s: float = 20.0) -> str:
    """The metrics URL a process logged (``serving metrics on ...``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = _SERVING.search(log_path.read_text(errors="replace"))
        if match:
            return match[1]
        time.sleep(0.05)
    pytest.fail(f"no 'serving metrics on' line in {log_path}")


def assert_depth_is(found: Scrape, counts: QueueCounts) -> None:
    """The depth gauges of queue ``default`` are ``counts``, and the backend answered."""
    for state in ("waiting", "delayed", "in_flight"):
        shown = found.total("conveyor_queue_depth", queue="default", state=state)
        assert shown == getattr(counts, state), state
    assert found.total("conveyor_backend_up") == 1


def assert_n_done(found: Scrape, n: int, *, job: str) -> None:
    """Exactly ``n`` jobs named ``job`` (and none other) started and finished done, and each
    histogram observed ``n``."""
    assert found.total("conveyor_jobs_finished_total", job=job, outcome="done") == n
    assert found.total("conveyor_jobs_finished_total") == n
    assert found.total("conveyor_jobs_started_total", job=job) == n
    assert found.total("conveyor_jobs_started_total") == n
    assert found.total("conveyor_job_duration_seconds_count", job=job) == n
    assert found.total("conveyor_job_queue_wait_seconds_count", job=job) == n
    assert found.total("conveyor_job_duration_seconds_bucket", job=job, le="+Inf") == n
