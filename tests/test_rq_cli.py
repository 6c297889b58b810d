"""``--rq-serializer`` (``CONVEYOR_RQ_SERIALIZER``) on the commands that read or write RQ jobs,
on a real redis-server with the real ``rq`` package: the flag reaches the backend, and with a
URL that is not ``rq+redis://`` it is a configuration error (exit 2)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from services import exitcodes
from services.backends.rq.mapping import PICKLE_REFUSED
from services.cli.app import main
from tests.rq_helpers import conveyor_enqueue, conveyor_worker, finish, rq_worker
from tests.test_cli import CLEAN_ENV


def test_a_pickled_rq_job_runs_with_the_flag_and_is_refused_without_it(redis_url: str) -> None:
    # Given a job enqueued with RQ's default serializer (pickle)
    pickling = Queue("q", connection=Redis.from_url(redis_url))
    refused = pickling.enqueue("tests.rq_jobs.add", 1, 1)
    # When a conveyor worker without the flag drains the queue
    finish(conveyor_worker(redis_url))
    # Then the job failed unread, saying how to opt in
    failed = Job.fetch(refused.id, connection=Redis.from_url(redis_url)).latest_result()
    assert failed is not None and failed.exc_string == PICKLE_REFUSED
    # And when the next pickled job meets a worker started with --rq-serializer pickle
    opted = pickling.enqueue("tests.rq_jobs.add", 2, 2)
    finish(conveyor_worker(redis_url, "--rq-serializer", "pickle"))
    # Then it ran, and RQ reads its result with its own (pickle) serializer
    job = Job.fetch(opted.id, connection=Redis.from_url(redis_url))
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 4


def test_conveyor_enqueue_with_pickle_feeds_an_rq_worker_on_its_default_serializer(
    redis_url: str,
) -> None:
    # Given a job put by `conveyor enqueue` with CONVEYOR_RQ_SERIALIZER=pickle
    job_id = conveyor_enqueue(
        redis_url, "tests.rq_jobs.add", "4", "5", env={"CONVEYOR_RQ_SERIALIZER": "pickle"}
    )
    # When a stock rq worker, on RQ's default (pickle) serializer, drains the queue
    rq_worker(redis_url)
    # Then it ran the job to completion
    assert Job.fetch(job_id, connection=Redis.from_url(redis_url)).return_value() == 9


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--queue", "q", "--jobs", "tests.rq_jobs:registry", "--burst"],
        ["enqueue", "tests.rq_jobs.add", "1", "2"],
        ["status"],
        ["dead", "list"],
        ["run", "--count", "1"],
        ["cancel", "abc"],
    ],
    ids=lambda command: command[0],
)
def test_the_flag_with_a_url_that_is_not_rq_is_a_configuration_error(
    redis_url: str, command: list[str]
) -> None:
    # Given a redis:// URL (not RQ's queues) and --rq-serializer
    args = [*command, "--url", redis_url, "--rq-serializer", "json"]
    # When the command runs
    result = CliRunner(env=CLEAN_ENV).invoke(main, args)
    # Then it exits 2 with one line naming the flag and the kind of URL it needs
    assert result.exit_code == exitcodes.USAGE, result.output
    assert "--rq-serializer (CONVEYOR_RQ_SERIALIZER) applies to rq+redis:// URLs" in result.output


def test_the_environment_variable_with_a_url_that_is_not_rq_is_a_configuration_error(
    redis_url: str,
) -> None:
    env = {**CLEAN_ENV, "CONVEYOR_RQ_SERIALIZER": "pickle"}
    result = CliRunner(env=env).invoke(main, ["dead", "list", "--url", redis_url])
    assert result.exit_code == exitcodes.USAGE, result.output
    assert "applies to rq+redis:// URLs only, not redis://" in result.output
