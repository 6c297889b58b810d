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


def pytest_configure(config: pytest.Config) -> None:
    # The topologies' fixtures as a plugin of the whole run (a conftest below the root may not
    # name pytest_plugins): every folder then shares one cluster and one Sentinel group.
    config.pluginmanager.import_plugin("tests.redis_topology_fixtures")


@pytest.fixture(params=["memory", *_URL_FIXTURES])
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    """A fresh, empty backend of each kind, closed after the test."""
    name = request.param
    url = "memory://" if name == "memory" else request.getfixturevalue(_URL_FIXTURES[name])
    subject = BackendUnderTest(name, open_queue(url, CONTRACT_SETTINGS))
    yield subject
    subject.close()
