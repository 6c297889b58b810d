"""Setup warnings about the Redis server: logged once per connection, however often checked."""

from __future__ import annotations

import logging

import pytest

from services.backends.redis.queue import RedisQueue
from services.settings import QueueSettings


def test_a_setup_warning_is_logged_once_however_often_the_server_is_checked(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a connection to the test server, which keeps nothing on disk
    queue = RedisQueue(redis_url, QueueSettings())
    try:
        with caplog.at_level(logging.WARNING, logger="conveyor.redis"):
            # When the server is checked three times (start-up, then every 30 s)
            reports = [queue.check_server() for _ in range(3)]
    finally:
        queue.close()
    # Then every check reports the warning, but the log says it once
    assert all(any("no persistence" in text for text in report) for report in reports)
    logged = [r for r in caplog.records if "no persistence" in r.getMessage()]
    assert len(logged) == 1
