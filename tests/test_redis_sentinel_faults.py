"""Fault tests on Redis Sentinel: a master, its replica and three sentinels, real workers.

The group is ``tests.redis_topology_fixtures``' (``redis-server`` and ``redis-server
--sentinel`` on loopback, healed and emptied before each test). ``tests.failover_run`` loads
two queues, with ``conveyor worker`` processes on ``redis+sentinel://`` and a ``Producer`` on
the same URL putting jobs steadily, then SIGKILLs the master: the sentinels promote the
replica, and the workers and the producer must follow it within ``FOLLOW_DEADLINE_S``
(measured and printed), every job ending done or dead exactly once (repeats only for jobs in
flight during the failover) and, with ``--durable`` on producer and workers, none lost.

With one replica, the promoted master has none left, so a durable write cannot be confirmed
until the killed node is back: the durable run restarts it (``SentinelGroup.heal``, as an
orchestrator would) and its figures include that restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.failover_run import FailoverPlan, checked_failover, shown_by
from tests.redis_topology_fixtures import SentinelGroup
from tests.topology_workload import soak

pytestmark = [pytest.mark.redis]

FOLLOW_DEADLINE_S = 30.0
"""Longest the workers and the producer may take to follow the promoted replica ("within
seconds"; a failover takes 2-5 s idle, this is a busy 2-core machine)."""


def master_of(group: SentinelGroup) -> int:
    port = group.master_port()
    assert port is not None, "no sentinel names a master"
    return port


@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
@pytest.mark.timeout(180)
def test_workers_and_producers_follow_the_promoted_replica(
    redis_sentinel: SentinelGroup, redis_sentinel_url: str, tmp_path: Path, durable: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given workers and a producer on redis+sentinel://, two queues busy
    plan = FailoverPlan(
        label="sentinel",
        url=redis_sentinel_url,
        queues=["orders", "mail"],
        master_port=lambda: master_of(redis_sentinel),
        kill=redis_sentinel.kill_master,
        promoted=redis_sentinel.wait_failover,
        restore=redis_sentinel.heal if durable else None,
        durable=durable,
        backlog=soak(100),
    )
    # When the master is SIGKILLed mid-run (figures printed); every job ends done or dead
    # exactly once (repeats only if in flight during the failover), none confirmed lost with
    # --durable (checked_failover asserts it)
    figures = checked_failover(plan, tmp_path, shown_by(capsys))
    # Then workers and producer followed the promoted replica within seconds
    assert figures.flowing_s < FOLLOW_DEADLINE_S
    assert figures.producer_s < FOLLOW_DEADLINE_S
