"""The backends the contract suite (``services.testing.contract``) runs on here: every test of
this folder runs on ``memory://``, on a real redis-server (``redis_fixtures``), on a Redis
Cluster of three masters with a replica each and on a master watched by three sentinels
(``redis_topology_fixtures``: real processes on free loopback ports, one of each per run), and
on RQ's data model on that redis-server (``rq+redis://``), where ``RQ_UNMET`` skips the points
RQ's model cannot meet, each with its reason (the README's "Migrating from RQ" lists them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.backends import open_queue
from services.testing.contract import CONTRACT_SETTINGS, BackendUnderTest

_URL_FIXTURES = {
    "redis": "redis_url",
    "redis-cluster": "redis_cluster_url",
    "redis-sentinel": "redis_sentinel_url",
    "rq": "redis_url",
}
_PREFIXES = {"rq": "rq+"}


@pytest.fixture(params=["memory", *_URL_FIXTURES])
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    """A fresh, empty backend of each kind, closed after the test."""
    name = request.param
    url = "memory://" if name == "memory" else request.getfixturevalue(_URL_FIXTURES[name])
    url = _PREFIXES.get(name, "") + url
    subject = BackendUnderTest(name, open_queue(url, CONTRACT_SETTINGS))
    yield subject
    subject.close()


RQ_UNMET = {
    "test_aborting.py": (
        "RQ's model has no abort request a running job's consumer polls (RQ stops a job by "
        "a pub/sub command to its own worker process); on rq+redis:// abort cancels waiting "
        "jobs only"
    ),
    "test_limits.py": (
        "limits park a job in Conveyor's own queue keys (cv:), which the rq backend does not "
        "take from: jobs with concurrency limits or rates are not supported on rq+redis://"
    ),
}
"""Contract modules whose points RQ's data model cannot meet, with the reason."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, with its reason, each contract test RQ's model cannot meet, on the rq subject."""
    for item in items:
        reason = RQ_UNMET.get(item.path.name)
        callspec = getattr(item, "callspec", None)
        if reason and callspec is not None and callspec.params.get("backend") == "rq":
            item.add_marker(pytest.mark.skip(reason=f"rq: {reason}"))
