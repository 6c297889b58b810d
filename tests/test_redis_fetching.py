"""``Fetcher``'s priority pass when one shard fails: the queues of the other shards go on.

A stand-in for the script calls answers FETCH per queue (or fails for a queue whose shard is
failing over); the real cluster behaviour is in ``test_redis_cluster_faults.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from services.backends.redis import keys
from services.backends.redis.fetching import Fetcher
from services.errors import BackendUnavailableError
from services.settings import QueueSettings


class ShardedScripts:
    """FETCH replies per queue: ``jobs[queue]`` waiting; queues in ``down`` fail."""

    where = "test"

    def __init__(self, jobs: dict[str, int], down: set[str]) -> None:
        self.jobs = jobs
        self.down = down
        self.asked: list[str] = []

    def run_many(self, name: str, what: str, queue: str, calls: Sequence[Any]) -> list[Any]:
        self.asked.append(queue)
        if queue in self.down:
            raise BackendUnavailableError(f"cannot fetch jobs: {queue}'s master is down")
        want = sum(int(call[1]) for call in calls)
        count = min(want, self.jobs.get(queue, 0))
        self.jobs[queue] = self.jobs.get(queue, 0) - count
        items: list[Any] = []
        for token in range(count):
            items += [token, keys.pack_element(f"{queue}-{token}", b"{}")]
        return [[0, -1, 1, 0, items]]


def fetcher(scripts: ShardedScripts) -> Fetcher:
    return Fetcher(
        scripts,  # type: ignore[arg-type]
        blocking=None,
        consumer_id="c1",
        settings=QueueSettings(),
        note=lambda *_: None,
        holding=set,
    )


def test_a_failing_shard_is_skipped_and_the_others_keep_their_order() -> None:
    scripts = ShardedScripts({"high": 1, "mid": 5, "low": 5}, down={"mid"})
    taking = fetcher(scripts)
    taken = taking.take(["high", "mid", "low"], max_count=4, timeout_s=0)
    assert [queue for queue, _, _ in taken] == ["high", "low", "low", "low"]
    assert scripts.asked == ["high", "mid", "low"]
    assert taking.skipped  # the backend then checks its in-flight records before the next fetch


def test_when_every_shard_fails_take_raises() -> None:
    scripts = ShardedScripts({"a": 1, "b": 1}, down={"a", "b"})
    with pytest.raises(BackendUnavailableError, match="master is down"):
        fetcher(scripts).take(["a", "b"], max_count=2, timeout_s=0)


def test_with_every_shard_up_nothing_is_skipped() -> None:
    scripts = ShardedScripts({"a": 2, "b": 2}, down=set())
    taking = fetcher(scripts)
    assert len(taking.take(["a", "b"], max_count=3, timeout_s=0)) == 3
    assert not taking.skipped
