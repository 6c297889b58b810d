"""The schedulers' Redis scripts touch only their own hash tag ``cv:{cron}:`` (one Redis Cluster
slot, no queue's keys), seen under MONITOR like the queue scripts (``test_redis_layout``)."""

from __future__ import annotations

import pytest
import redis

from services.backends.redis.schedule import LAST_KEY, LEADER_KEY
from tests.redis_fixtures import MakeQueue
from tests.test_redis_layout import Watch, script_runs

pytestmark = pytest.mark.redis


def test_schedule_scripts_touch_the_cron_tag_only(redis_url: str, make_queue: MakeQueue) -> None:
    # Given a connection, watched
    queue = make_queue("s1")
    admin = redis.Redis.from_url(redis_url)
    watch = Watch(redis_url)
    # When every schedule call runs
    assert queue.lead("s1", 5.0) and not queue.lead("s2", 5.0)
    queue.mark_fired("tick", 1.0)
    queue.mark_fired("tick", 0.5)
    assert queue.last_fired(["tick", "other"]) == {"tick": 1.0}
    assert queue.leader() == "s1"
    queue.resign("s2")
    queue.resign("s1")
    watch.stop(admin)
    # Then each script declared and touched keys of the {cron} tag only
    # (a first call per script is refused, NOSCRIPT, and sent again once loaded: it ran nothing)
    runs = [run for run in script_runs(admin, watch.lines) if run.touched]
    assert len(runs) == 6
    for run in runs:
        assert run.declared and all(
            k in (LEADER_KEY.encode(), LAST_KEY.encode()) for k in run.declared
        )
        assert run.touched and all(k.startswith(b"cv:{cron}:") for k in run.touched)
    admin.close()
