"""The JSON codec: round trips, and every malformed body rejected with a precise ``DecodeError``."""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest

from services.codec import (
    MAX_BODY_BYTES,
    decode_job,
    decode_value,
    encode_job,
    encode_value,
    peek_job_id,
)
from services.errors import DecodeError, EncodeError
from services.job import FORMAT_VERSION, Job


def record(**changes: Any) -> dict[str, Any]:
    """A valid version-1 wire record, with ``changes`` applied."""
    base: dict[str, Any] = {
        "v": 1,
        "id": "0123abcd",
        "name": "resize",
        "args": ["photo.jpg", 640],
        "kwargs": {"quality": 90},
        "queue": "default",
        "attempt": 0,
        "enqueued_at": 1764190000.25,
    }
    base.update(changes)
    return base


def body_of(data: Any) -> bytes:
    return json.dumps(data).encode()


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("photo.jpg", 640, 1.5, True, None), {"quality": 90}),
        (("héllo wörld ☃", "日本語", "emoji 🚀"), {"clé": "välue"}),
        (([1, [2, [3, {"deep": [4.5, None]}]]], {"a": {"b": {"c": []}}}), {"n": {"x": [1, 2]}}),
        ((), {"only": "kwargs", "empty": "", "zero": 0, "neg": -1}),
    ],
    ids=["empty", "scalars", "unicode", "nested", "kwargs-only"],
)
def test_encode_decode_round_trip(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # Given a job with these arguments
    job = Job(name="resize", args=args, kwargs=kwargs, queue="images", attempt=2)

    # When it is encoded and decoded
    body = encode_job(job)
    decoded = decode_job(body)

    # Then every field survives, and the body is compact UTF-8 JSON
    assert decoded == job
    assert isinstance(decoded.args, tuple)
    assert b", " not in body and b": " not in body
    assert json.loads(body)["v"] == FORMAT_VERSION


def test_unicode_is_stored_as_utf8_not_escaped() -> None:
    # Given a job with non-ASCII text
    job = Job(name="greet", args=("☃",))

    # When it is encoded
    body = encode_job(job)

    # Then the character is in the body as UTF-8
    assert "☃".encode() in body


def test_next_attempt_round_trips_with_the_same_id() -> None:
    # Given a decoded job, retried
    job = decode_job(encode_job(Job(name="resize", args=(1,))))
    retry = job.next_attempt()

    # When the retry goes through the codec
    decoded = decode_job(encode_job(retry))

    # Then it is the same job, one attempt later
    assert (decoded.id, decoded.attempt) == (job.id, job.attempt + 1)


def test_integer_timestamp_is_accepted_as_float() -> None:
    # Given a record whose enqueued_at is an integer (valid JSON number)
    body = body_of(record(enqueued_at=1764190000))

    # When it is decoded
    job = decode_job(body)

    # Then the timestamp is a float
    assert job.enqueued_at == 1764190000.0 and isinstance(job.enqueued_at, float)


# -- malformed bodies -------------------------------------------------------------------------
def test_pickle_is_refused_and_named() -> None:
    # Given a pickled job (what pickle-based queues store)
    body = pickle.dumps({"name": "resize", "args": (1,)})

    # When it is decoded / Then it is refused as not JSON, with a hint, and never unpickled
    with pytest.raises(DecodeError, match=r"^message is not UTF-8 JSON \(looks like pickle\)$"):
        decode_job(body)


def test_ascii_pickle_protocol_0_is_refused_as_invalid_json() -> None:
    body = pickle.dumps({"name": "resize"}, protocol=0)
    with pytest.raises(DecodeError, match=r"^message is not valid JSON: .+ at byte \d+$"):
        decode_job(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (body_of(record())[:-7], r"^message is not valid JSON: .+ at byte \d+$"),
        (b"", r"^message is not valid JSON: Expecting value at byte 0$"),
        (b"\xff\xfe{}", r"^message is not UTF-8 JSON$"),
        (b'{"v": 1, "name": "caf\xe9"}', r"^message is not UTF-8 JSON$"),
        (b"\xef\xbb\xbf" + body_of(record()), r"^message is not valid JSON: .*BOM.* at byte 0$"),
        (b"[" * 100_000, r"^message is nested too deeply$"),
        (b"[" * 100_000 + b"]" * 100_000, r"^message is nested too deeply$"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, r"^message is nested too deeply$"),
    ],
    ids=["truncated", "empty", "utf16-bom", "latin1", "utf8-bom", "deep-open", "deep", "deep-obj"],
)
def test_unparseable_bodies(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_job(body, max_bytes=10 * MAX_BODY_BYTES)


@pytest.mark.parametrize(
    ("data", "kind"),
    [([record()], "list"), (42, "int"), (1.5, "float"), ("job", "str"), (None, "NoneType")],
)
def test_json_that_is_not_an_object(data: Any, kind: str) -> None:
    with pytest.raises(DecodeError, match=rf"^message is a JSON {kind}, not a job object$"):
        decode_job(body_of(data))


@pytest.mark.parametrize("missing", ["v", "id", "name", "args", "enqueued_at"])
def test_each_missing_field_is_named(missing: str) -> None:
    # Given a record without one field
    data = record()
    del data[missing]

    # When it is decoded / Then exactly that field is named
    with pytest.raises(DecodeError, match=rf"^message lacks field\(s\) {missing}$"):
        decode_job(body_of(data))


def test_all_missing_fields_are_named() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_job(b"{}")
    assert str(caught.value) == "message lacks field(s) v, id, name, args, enqueued_at"


@pytest.mark.parametrize(
    ("field", "default"), [("kwargs", {}), ("queue", "default"), ("attempt", 0)]
)
def test_fields_at_their_default_are_left_out_and_read_back(field: str, default: Any) -> None:
    # Given a job whose kwargs, queue and attempt are the defaults
    job = Job(name="resize", args=(1,))
    # When it is encoded and decoded / Then the field is absent on the wire but restored
    body = encode_job(job)
    assert f'"{field}"' not in body.decode()
    assert getattr(decode_job(body), field) == default


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", 7, "field 'id' must be a str, not int"),
        ("id", None, "field 'id' must be a str, not NoneType"),
        ("name", ["resize"], "field 'name' must be a str, not list"),
        ("queue", 1, "field 'queue' must be a str, not int"),
        ("args", {"a": 1}, "field 'args' must be a list, not dict"),
        ("args", "abc", "field 'args' must be a list, not str"),
        ("kwargs", [["a", 1]], "field 'kwargs' must be a dict, not list"),
        ("kwargs", None, "field 'kwargs' must be a dict, not NoneType"),
        ("attempt", -1, "field 'attempt' must be a non-negative integer, not -1"),
        ("attempt", True, "field 'attempt' must be a non-negative integer, not True"),
        ("attempt", "0", "field 'attempt' must be a non-negative integer, not '0'"),
        ("attempt", 1.0, "field 'attempt' must be a non-negative integer, not 1.0"),
        ("enqueued_at", "2025-01-01", "field 'enqueued_at' must be a number, not '2025-01-01'"),
        ("enqueued_at", None, "field 'enqueued_at' must be a number, not None"),
        ("enqueued_at", False, "field 'enqueued_at' must be a number, not False"),
        ("enqueued_at", math.nan, "message is not valid JSON: NaN is not a JSON value"),
        ("enqueued_at", math.inf, "message is not valid JSON: Infinity is not a JSON value"),
        ("enqueued_at", "NaN", "field 'enqueued_at' must be a number, not 'NaN'"),
    ],
)
def test_each_wrong_field_type(field: str, value: Any, message: str) -> None:
    # Given a record with one field of the wrong type (json.dumps writes NaN/Infinity tokens)
    body = body_of(record(**{field: value}))

    # When it is decoded / Then the error names the field and the offending value
    with pytest.raises(DecodeError) as caught:
        decode_job(body)
    assert str(caught.value) == message


@pytest.mark.parametrize("version", [2, 0, "1", None, True])
def test_unknown_versions(version: Any) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_job(body_of(record(v=version)))
    assert str(caught.value) == f"message has format version {version!r}; this build reads 1"


@pytest.mark.parametrize("field", ["id", "name"])
def test_empty_id_or_name(field: str) -> None:
    with pytest.raises(DecodeError, match=r"^fields 'id' and 'name' must not be empty$"):
        decode_job(body_of(record(**{field: ""})))


def test_oversized_body_is_refused_before_parsing() -> None:
    # Given a body one byte over the limit (and not even JSON: it must not get that far)
    body = b"x" * 101

    # When it is decoded with a 100-byte limit / Then the size is the reason
    with pytest.raises(DecodeError) as caught:
        decode_job(body, max_bytes=100)
    assert str(caught.value) == "message is 101 bytes, over the 100-byte limit"


def test_body_at_exactly_the_limit_is_accepted() -> None:
    body = encode_job(Job(name="resize"))
    assert decode_job(body, max_bytes=len(body)).name == "resize"


def test_default_limit_applies() -> None:
    body = body_of(record(args=["x" * MAX_BODY_BYTES]))
    with pytest.raises(DecodeError, match=rf"over the {MAX_BODY_BYTES}-byte limit"):
        decode_job(body)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_tokens_in_arguments_are_refused(token: bytes) -> None:
    # Given a body our encoder could never produce: a NaN/Infinity token among the arguments
    body = body_of(record(args=[])).replace(b'"args": []', b'"args": [' + token + b"]")
    assert token in body

    # When it is decoded / Then it is refused, as encode_job would refuse it
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_job(body)


# -- encoding errors --------------------------------------------------------------------------
class Opaque:
    """An object JSON cannot encode."""


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (({1, 2},), {}, "Object of type set is not JSON serializable"),
        ((Opaque(),), {}, "Object of type Opaque is not JSON serializable"),
        ((), {"when": Opaque()}, "Object of type Opaque is not JSON serializable"),
        ((b"bytes",), {}, "Object of type bytes is not JSON serializable"),
        ((math.nan,), {}, "Out of range float values are not JSON compliant"),
        ((), {"x": math.inf}, "Out of range float values are not JSON compliant"),
        ((circular(),), {}, "Circular reference detected"),
        (("\ud800",), {}, "surrogates not allowed"),
    ],
    ids=["set", "object", "object-kwarg", "bytes", "nan", "inf-kwarg", "circular", "surrogate"],
)
def test_unencodable_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    # Given a job whose arguments are not JSON
    job = Job(name="resize", args=args, kwargs=kwargs)

    # When it is encoded / Then EncodeError names the job and the cause
    with pytest.raises(EncodeError) as caught:
        encode_job(job)
    text = str(caught.value)
    assert text.startswith("arguments of job 'resize' is not JSON-serialisable: ")
    assert message in text


def test_too_deeply_nested_arguments() -> None:
    # Given arguments nested far beyond the recursion limit
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]

    # When encoded / Then a clear EncodeError, not a RecursionError
    with pytest.raises(EncodeError, match=r"^arguments of job 'resize' is nested too deeply"):
        encode_job(Job(name="resize", args=(deep,)))


def test_oversized_job_is_refused_at_encode() -> None:
    # Given a job whose body is larger than the limit
    job = Job(name="resize", args=("x" * 200,))

    # When encoded with a 100-byte limit / Then the size and the limit are named
    with pytest.raises(EncodeError, match=r"^job 'resize' encodes to \d+ bytes, over 100$"):
        encode_job(job, max_bytes=100)


def test_non_string_kwargs_keys_become_strings() -> None:
    # JSON object keys are strings: an int key cannot survive as an int, and must not crash
    decoded = decode_job(encode_job(Job(name="resize", kwargs={1: "a"})))  # type: ignore[dict-item]
    assert decoded.kwargs == {"1": "a"}


def test_encode_value_and_decode_value() -> None:
    assert decode_value(encode_value({"r": [1, "☃"]})) == {"r": [1, "☃"]}
    with pytest.raises(EncodeError, match=r"^result is not JSON-serialisable"):
        encode_value({1, 2}, what="result")
    with pytest.raises(DecodeError, match=r"^result is not valid JSON"):
        decode_value(b"{", what="result")


# -- peek_job_id ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (body_of(record()), "0123abcd"),
        (body_of({"id": "only-an-id"}), "only-an-id"),
        (body_of(record(v=99, attempt=-5)), "0123abcd"),
        (body_of(record(id="")), None),
        (body_of(record(id=12)), None),
        (body_of([record()]), None),
        (b'{"id": "trunc', None),
        (pickle.dumps({"id": "x"}), None),
        (b"\xff\xfe", None),
        (b"[" * 100_000, None),
        (b"", None),
    ],
    ids=[
        "valid",
        "bare",
        "bad-fields",
        "empty-id",
        "int-id",
        "list",
        "truncated",
        "pickle",
        "non-utf8",
        "deep",
        "empty",
    ],
)
def test_peek_job_id(body: bytes, expected: str | None) -> None:
    # Given any body, however malformed / Then the id is found when there is one, never raises
    assert peek_job_id(body) == expected


def test_peek_job_id_of_an_encoded_job() -> None:
    job = Job(name="resize")
    assert peek_job_id(encode_job(job)) == job.id
