"""Unit tests of the rq backend's pure parts: URLs, the registry's RQ names, status mapping."""

from __future__ import annotations

import pytest
from rq.job import JobStatus as RqStatus

from services.backends import open_async_queue, scheme_of
from services.backends.rq.mapping import ATTEMPT, conveyor_status, failure_text
from services.backends.rq.urls import RqTarget, parse_url, with_serializer
from services.errors import ConfigError, JobDefinitionError, UnknownJobError
from services.registry import Registry
from tests.rq_jobs import add, registry


def test_rq_urls_name_the_redis_beneath_and_json_unless_pickle_is_asked_for() -> None:
    assert scheme_of("rq+redis://h:1/0") == "rq+redis"
    assert parse_url("rq+redis://h:1/2") == RqTarget("redis://h:1/2", "json")
    assert parse_url("rq+rediss://h:1/0?serializer=pickle") == RqTarget("rediss://h:1/0", "pickle")
    assert parse_url(with_serializer("rq+redis://h:1/0", "pickle")).serializer == "pickle"
    with pytest.raises(ConfigError, match="unknown RQ serializer"):
        parse_url("rq+redis://h:1/0?serializer=yaml")
    with pytest.raises(ConfigError, match="cannot serve RQ's queues"):
        open_async_queue("rq+redis://h:1/0")


def test_the_registry_answers_to_rq_name_and_module_qualname_only() -> None:
    # Given tests.rq_jobs' registry: resize declares rq_name, add is a module-level function
    assert registry.get("myapp.jobs.resize").name == "resize"
    assert registry.get("tests.rq_jobs.add").func is add
    assert "tests.rq_jobs.add" in registry
    # Then any other path stays unknown
    with pytest.raises(UnknownJobError):
        registry.get("os.system")
    # And an rq_name cannot be claimed twice
    other = Registry()
    other.job(rq_name="a.b")(lambda: None)
    with pytest.raises(JobDefinitionError, match="taken"):
        other.job(name="second", rq_name="a.b")(lambda: None)


def test_rq_statuses_read_as_conveyor_statuses() -> None:
    assert conveyor_status(RqStatus.STARTED, {}) == "running"
    assert conveyor_status(RqStatus.FINISHED, {}) == "done"
    assert conveyor_status(RqStatus.CANCELED, {}) == "dead"
    assert conveyor_status(RqStatus.SCHEDULED, {ATTEMPT: 1}) == "failed"  # waits for a retry
    assert failure_text("unknown job 'x'").startswith("not an allowed job")
    assert failure_text("Traceback ...") == "Traceback ..."
