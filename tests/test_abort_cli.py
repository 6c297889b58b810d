"""``conveyor cancel`` and ``conveyor abort`` as a user runs them, against a real redis-server:
one line per job id, exit 0 when every job was ended, 1 when some could not be, 2 bad input."""

from __future__ import annotations

import pytest

from producer import Producer
from services.backends.redis.queue import RedisQueue
from services.protocol import Completion
from services.settings import QueueSettings
from tests.test_cli_redis import conveyor

pytestmark = pytest.mark.redis


def test_cancel_ends_waiting_jobs_and_names_those_it_cannot(redis_url: str) -> None:
    # Given a queued job, a delayed one and a running one
    queue = RedisQueue(redis_url, QueueSettings())
    producer = Producer(queue, name="mail")
    running = producer.enqueue("add", 1, 2)
    [delivery] = queue.get(["mail"], timeout_s=5)
    queued, delayed = producer.enqueue("add", 3, 4), producer.enqueue_in(60, "add", 5, 6)
    env = {"CONVEYOR_URL": redis_url}
    # When the two that wait are cancelled / Then exit 0, one line each
    done = conveyor("cancel", queued.id, delayed.id, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{queued.id}: cancelled (it will not run)",
        f"{delayed.id}: cancelled (it will not run)",
    ]
    # When the running one and an unknown id are cancelled / Then exit 1, each named
    refused = conveyor("cancel", running.id, "nope-1", env=env)
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == [
        f"{running.id}: running, not cancelled (`conveyor abort` stops a running job)",
        "nope-1: not found (never put, or its status expired)",
    ]
    assert queue.status(running.id) is not None
    assert queue.aborted([delivery]) == []
    queue.close()


def test_abort_asks_the_worker_to_stop_a_running_job_and_is_too_late_for_a_finished_one(
    redis_url: str,
) -> None:
    # Given a running job and a finished one
    queue = RedisQueue(redis_url, QueueSettings())
    producer = Producer(queue, name="mail")
    running, finished = producer.enqueue("add", 1, 2), producer.enqueue("add", 3, 4)
    first, second = queue.get(["mail"], max_count=2, timeout_s=5)
    queue.ack([Completion(second)])
    env = {"CONVEYOR_URL": redis_url}
    # When the running one is aborted / Then exit 0 and its consumer is told
    done = conveyor("abort", running.id, env=env)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == f"{running.id}: abort requested (running; its worker stops it within a second)\n"
    )
    assert queue.aborted([first, second]) == [first]
    # When the finished one is aborted / Then exit 1: too late
    late = conveyor("abort", finished.id, env=env)
    assert late.returncode == 1
    assert late.stdout == f"{finished.id}: too late, already done\n"
    queue.close()


def test_bad_input_exits_2(redis_url: str) -> None:
    # A memory:// queue lives in its own process; an id that is not a valid job id
    assert conveyor("abort", "x", env={"CONVEYOR_URL": "memory://"}).returncode == 2
    assert conveyor("cancel", "bad id!", env={"CONVEYOR_URL": redis_url}).returncode == 2
