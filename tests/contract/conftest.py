"""The backends the contract suite (``services.testing.contract``) runs on here: every test of
this folder runs on ``memory://``, on a real redis-server (``redis_fixtures``), on a Redis
Cluster of three masters with a replica each and on a master watched by three sentinels
(``redis_topology_fixtures``: real processes on free loopback ports, one of each per run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.backends import open_queue
from services.testing.contract import CONTRACT_SETTINGS, BackendUnderTest

_URL_FIXTURES = {
    "redis": "redis_url",
    "redis-cluster": "redis_cluster_url",
    "redis-sentinel": "redis_sentinel_url",
}


@pytest.fixture(params=["memory", *_URL_FIXTURES])
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    """A fresh, empty backend of each kind, closed after the test."""
    name = request.param
    url = "memory://" if name == "memory" else request.getfixturevalue(_URL_FIXTURES[name])
    subject = BackendUnderTest(name, open_queue(url, CONTRACT_SETTINGS))
    yield subject
    subject.close()
