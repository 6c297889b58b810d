"""The one codec: jobs to bytes and back, as JSON.

Every backend stores what this module produces and nothing else, so a job that cannot cross a
process boundary fails the same way, at enqueue, on every backend. Decoding never executes
anything: pickle, truncated JSON, wrong field types and unknown versions all raise
``DecodeError`` with a reason precise enough to put in a dead letter.

Wire format (version 1), one compact JSON object::

    {"v":1,"id":"<hex>","name":"resize","args":[...],"enqueued_at":1764190000.123,
     "kwargs":{...},"queue":"images","attempt":1}

``kwargs``, ``queue`` and ``attempt`` are left out at their defaults (``{}``, ``"default"``,
``0``), which keeps a typical queued job ~40 bytes smaller in the backend; ``timeout_s`` (a
job's own time limit, a positive number of seconds) is there only when the job has one.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from services.errors import DecodeError, EncodeError
from services.job import DEFAULT_QUEUE, FORMAT_VERSION, Job

MAX_BODY_BYTES = 1024 * 1024
_REQUIRED = ("v", "id", "name", "args", "enqueued_at")
_DEFAULTS: dict[str, Any] = {"kwargs": {}, "queue": DEFAULT_QUEUE, "attempt": 0}
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def encode_value(value: Any, *, what: str = "value") -> bytes:
    """JSON-encode ``value`` or raise ``EncodeError`` naming ``what`` could not be encoded."""
    try:
        return _encoder.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"{what} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise EncodeError(f"{what} is nested too deeply to encode") from None


def encode_job(job: Job, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The bytes a backend stores for ``job``.

    Raises:
        EncodeError: an argument is not JSON (a set, an object, NaN) or the body is too large.
    """
    record: dict[str, Any] = {
        "v": job.version,
        "id": job.id,
        "name": job.name,
        "args": list(job.args),
        "enqueued_at": job.enqueued_at,
    }
    # Fields at their default are left out: a queued job costs backend memory per byte.
    if job.kwargs:
        record["kwargs"] = dict(job.kwargs)
    if job.queue != DEFAULT_QUEUE:
        record["queue"] = job.queue
    if job.attempt:
        record["attempt"] = job.attempt
    if job.timeout_s is not None:
        record["timeout_s"] = _checked_timeout(job.timeout_s, EncodeError)
    body = encode_value(record, what=f"arguments of job {job.name!r}")
    if len(body) > max_bytes:
        raise EncodeError(f"job {job.name!r} encodes to {len(body)} bytes, over {max_bytes}")
    return body


def decode_value(body: bytes, *, what: str = "value") -> Any:
    """Parse JSON bytes, or raise ``DecodeError`` saying why they are not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        hint = " (looks like pickle)" if body[:1] == b"\x80" else ""
        raise DecodeError(f"{what} is not UTF-8 JSON{hint}") from None
    if text.startswith("\ufeff"):
        raise DecodeError(f"{what} is not valid JSON: Unexpected UTF-8 BOM at byte 0")
    try:
        return _decoder.decode(text)
    except _NotJson as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc.msg} at byte {exc.pos}") from None
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # int() refuses over-long digit strings (CVE-2020-10735 limit)
        raise DecodeError(f"{what} is not usable JSON: {_why_not_usable(exc)}") from None


def _why_not_usable(exc: ValueError) -> str:
    """Name the integer-length limit plainly; any other parser ValueError as it is."""
    found = re.search(r"value has (\d+) digits", str(exc))
    if found is None:
        return str(exc)
    limit = sys.get_int_max_str_digits()
    return f"it holds an integer of {found[1]} digits, over Python's limit of {limit} digits"


class _NotJson(ValueError):
    pass


def _reject_constant(token: str) -> Any:
    """json.loads accepts NaN and Infinity, which JSON does not (and our encoder refuses)."""
    raise _NotJson(f"{token} is not a JSON value")


# Built once: json.loads with any option builds a new decoder on every call (a hot path).
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode_job(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Job:
    """The job that ``body`` encodes.

    Raises:
        DecodeError: the body is too large, not JSON, or not a version-1 job record.
    """
    if len(body) > max_bytes:
        raise DecodeError(f"message is {len(body)} bytes, over the {max_bytes}-byte limit")
    record = decode_value(body, what="message")
    if not isinstance(record, dict):
        raise DecodeError(f"message is a JSON {type(record).__name__}, not a job object")
    _check_fields(record)
    return Job(
        name=record["name"],
        args=tuple(record["args"]),
        kwargs=record["kwargs"],
        queue=record["queue"],
        id=record["id"],
        attempt=record["attempt"],
        enqueued_at=float(record["enqueued_at"]),
        version=record["v"],
        timeout_s=record.get("timeout_s"),
    )


def _check_fields(record: dict[str, Any]) -> None:
    missing = [name for name in _REQUIRED if name not in record]
    if missing:
        raise DecodeError(f"message lacks field(s) {', '.join(missing)}")
    for name, default in _DEFAULTS.items():
        record.setdefault(name, default)
    if type(record["v"]) is not int or record["v"] != FORMAT_VERSION:
        raise DecodeError(f"message has format version {record['v']!r}; this build reads 1")
    _expect(record, "id", str)
    _expect(record, "name", str)
    _expect(record, "queue", str)
    _expect(record, "args", list)
    _expect(record, "kwargs", dict)
    attempt = record["attempt"]
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise DecodeError(f"field 'attempt' must be a non-negative integer, not {attempt!r}")
    stamp = record["enqueued_at"]
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise DecodeError(f"field 'enqueued_at' must be a number, not {stamp!r}")
    if not record["id"] or not record["name"]:
        raise DecodeError("fields 'id' and 'name' must not be empty")
    if record.get("timeout_s") is not None:
        _checked_timeout(record["timeout_s"], DecodeError)


def _checked_timeout(value: Any, error: type[Exception]) -> float:
    """``value`` if it is a positive, finite number of seconds; else ``error`` saying so."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise error(f"field 'timeout_s' must be a positive number of seconds, not {value!r}")
    return value


def _expect(record: dict[str, Any], name: str, kind: type) -> None:
    value = record[name]
    if not isinstance(value, kind):
        raise DecodeError(f"field {name!r} must be a {kind.__name__}, not {type(value).__name__}")


def peek_job_id(body: bytes) -> str | None:
    """The id inside a body that may be malformed, for dead-letter bookkeeping; else None."""
    try:
        record = _decoder.decode(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]:
        return str(record["id"])
    return None
