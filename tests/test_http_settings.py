"""Pure parts of ``conveyor serve``: the authentication rule, job ids from idempotency keys, the
checking and encoding of submitted jobs, and the error table."""

from __future__ import annotations

import pytest

from producer.http.problems import (
    InvalidBatch,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    problem_of,
)
from producer.http.settings import ServeSettings, check_auth, is_loopback
from producer.http.submission import JobRequest, Submission, chosen_id, key_job_id
from services.codec import decode_job
from services.errors import (
    BackendUnavailableError,
    ConfigError,
    ConveyorError,
    JobArgumentsError,
    QueueFullError,
    UnknownJobError,
)
from services.names import InvalidNameError
from tests.jobs import registry


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.internal", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_token_is_needed_off_loopback_unless_no_auth_is_explicit() -> None:
    # Loopback without a token, anywhere with a token, anywhere with --no-auth: fine
    check_auth(ServeSettings(host="127.0.0.1"), no_auth=False)
    check_auth(ServeSettings(host="0.0.0.0", token="t0ken"), no_auth=False)
    check_auth(ServeSettings(host="0.0.0.0"), no_auth=True)
    # Off loopback without either: refused, saying what to do
    with pytest.raises(ConfigError, match=r"--token-file.*--no-auth"):
        check_auth(ServeSettings(host="0.0.0.0"), no_auth=False)
    with pytest.raises(ConfigError, match="contradict"):
        check_auth(ServeSettings(token="t0ken"), no_auth=True)
    with pytest.raises(ConfigError, match="empty"):
        check_auth(ServeSettings(token="  "), no_auth=False)


def test_the_token_is_not_in_the_settings_repr() -> None:
    assert "s3cret" not in repr(ServeSettings(token="s3cret"))


def test_a_key_that_is_a_job_id_is_the_id_any_other_stands_for_one() -> None:
    assert key_job_id("order-17") == "order-17"
    derived = key_job_id("order 17 / retry")
    assert derived == key_job_id("order 17 / retry")
    assert len(derived) == 32 and int(derived, 16) >= 0
    # Each job of a batch sent with a key gets its own id, the same on every retry
    assert key_job_id("order-17", 0) != key_job_id("order-17", 1)
    assert key_job_id("order-17", 0) == key_job_id("order-17", 0)
    assert key_job_id("order-17", 0) != "order-17"


def test_the_id_a_request_asks_for() -> None:
    assert chosen_id(JobRequest("echo"), None) is None
    assert chosen_id(JobRequest("echo", job_id="mine"), None) == "mine"
    assert chosen_id(JobRequest("echo"), "k") == "k"
    assert chosen_id(JobRequest("echo", job_id="k"), "k") == "k"
    assert chosen_id(JobRequest("echo"), "k", 3) == key_job_id("k", 3)
    with pytest.raises(InvalidRequest):
        chosen_id(JobRequest("echo", job_id="a"), "b")
    with pytest.raises(InvalidNameError):
        chosen_id(JobRequest("echo", job_id="not valid"), None)


def test_submission_checks_like_the_producer_and_encodes_with_the_codec() -> None:
    submission = Submission(registry, max_job_bytes=1000)
    encoded = submission.encode_one("q", JobRequest("add", [1, 2]), None)
    job = decode_job(encoded.body)
    assert (job.id, job.name, job.args, job.queue) == (encoded.job_id, "add", (1, 2), "q")
    assert encoded.generated and len(encoded.job_id) == 32
    assert not submission.encode_one("q", JobRequest("add", [1, 2], job_id="x"), None).generated
    with pytest.raises(UnknownJobError):
        submission.encode_one("q", JobRequest("nope"), None)
    with pytest.raises(JobArgumentsError):
        submission.encode_one("q", JobRequest("add", [1]), None)
    with pytest.raises(InvalidNameError):
        submission.encode_one("bad queue", JobRequest("add", [1, 2]), None)
    with pytest.raises(PayloadTooLarge):
        submission.encode_one("q", JobRequest("echo", ["x" * 1000]), None)


def test_a_batch_names_every_invalid_job() -> None:
    submission = Submission(registry)
    requests = [JobRequest("add", [1, 2]), JobRequest("nope"), JobRequest("add", [1])]
    with pytest.raises(InvalidBatch) as caught:
        submission.encode_batch("q", requests, None)
    assert [d["index"] for d in caught.value.details] == [1, 2]
    assert "2 of 3" in str(caught.value)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidNameError("x"), 422, "invalid_name"),
        (UnknownJobError("x"), 422, "unknown_job"),
        (JobArgumentsError("x"), 422, "invalid_arguments"),
        (QueueFullError("x"), 503, "queue_full"),
        (BackendUnavailableError("x"), 503, "backend_unavailable"),
        (ConfigError("x"), 503, "backend_refused"),
        (Unauthorized("x"), 401, "unauthorized"),
        (NotReady("x"), 503, "not_ready"),
    ],
)
def test_errors_map_to_statuses(error: ConveyorError, status: int, code: str) -> None:
    problem = problem_of(error)
    assert (problem.status, problem.code) == (status, code)
    assert ("Retry-After" in problem.headers) is (status == 503)


def test_notes_of_an_error_are_in_its_message() -> None:
    error = BackendUnavailableError("Redis is unreachable")
    error.add_note("retry with an Idempotency-Key")
    assert problem_of(error).message == "Redis is unreachable retry with an Idempotency-Key"


def test_argument_checks_are_remembered_by_shape_not_value() -> None:
    submission = Submission(registry)
    # The same wrong shape is refused every time, with a fresh error each time
    errors = []
    for _ in range(2):
        with pytest.raises(JobArgumentsError) as caught:
            submission.encode_one("q", JobRequest("add", [1]), None)
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert str(errors[0]) == str(errors[1])
    # Other values of a shape that fits pass, as do keyword names that fit
    for a, b in ((1, 2), ("x", None)):
        submission.encode_one("q", JobRequest("add", [a, b]), None)
    submission.encode_one("q", JobRequest("add", [1], {"b": 2}), None)
    with pytest.raises(JobArgumentsError):
        submission.encode_one("q", JobRequest("add", [1], {"c": 2}), None)
