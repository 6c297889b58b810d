"""The backends the contract suite (``services.testing.contract``) runs on here: every test of
this folder runs once on ``memory://`` and once on a real redis-server (``redis_fixtures``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.backends import open_queue
from services.testing.contract import CONTRACT_SETTINGS, BackendUnderTest


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    subject = BackendUnderTest(request.param, open_queue(url, CONTRACT_SETTINGS))
    yield subject
    subject.close()
