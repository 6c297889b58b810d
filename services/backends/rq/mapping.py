"""RQ jobs as Conveyor bodies and back, and RQ statuses as Conveyor statuses (no I/O).

An RQ job names its function by import path (``myapp.jobs.resize``); the Conveyor body made
from it carries that path as the job name, which the worker's registry resolves through
``rq_name`` (or the function's ``module.qualname``). Nothing here imports the path.

Conveyor's own bookkeeping rides in the job's ``meta`` (RQ keeps and shows it, and ignores
keys it does not know): ``conveyor_attempt`` (the next run's attempt number) and
``conveyor_redeliveries`` (how many consumers died running it).

Timeouts: an RQ job's ``timeout`` (``job_timeout``; RQ stamps its queue's default, 180 s, on a
job enqueued without one) becomes the job's ``timeout_s``, so a Conveyor worker stops it when
``rq worker`` would; ``-1`` (RQ's "no limit") leaves it to the registry and ``--job-timeout``.
A Conveyor put with ``timeout_s`` sets RQ's ``timeout`` (whole seconds, rounded up) and keeps
the exact value in ``meta`` (``conveyor_timeout_s``), so the body comes back as it was put.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import DefaultSerializer, JSONSerializer, Serializer

from services.codec import decode_job, encode_job
from services.errors import DecodeError
from services.job import Job

ATTEMPT = "conveyor_attempt"
REDELIVERIES = "conveyor_redeliveries"
ENQUEUED = "conveyor_enqueued_at"
"""The Conveyor producer's stamp (RQ sets its own ``enqueued_at`` at enqueue)."""
TIMEOUT = "conveyor_timeout_s"
"""A Conveyor put's exact ``timeout_s`` (RQ's ``timeout`` holds it in whole seconds)."""
RAW = "conveyor_raw"
"""A body that is not a Conveyor job (base64): kept byte for byte, delivered as it came, so
the worker dead-letters it with the reason as on every backend."""
RAW_FUNC = "conveyor.undecodable"
"""The function path of a job holding a raw body: no RQ worker can import it either."""
NOT_ALLOWED = "not an allowed job"
"""How the failure of an RQ job whose function path maps to no registered job begins."""
PICKLE_REFUSED = (
    "the job is serialized with pickle, which this consumer does not read (reading pickle runs "
    "code the payload names); opt in with rq+redis://...?serializer=pickle or --rq-serializer "
    "pickle if every producer is trusted"
)

_SERIALIZERS: dict[str, Serializer] = {"json": JSONSerializer, "pickle": DefaultSerializer}


def text(value: object) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def started_key(queue: str) -> str:
    """The key of ``queue``'s ``StartedJobRegistry`` (``rq:wip:<queue>``), from RQ's template:
    building a registry object per job costs more than the commands it sends."""
    return str(StartedJobRegistry.key_template.format(queue))


def finished_key(queue: str) -> str:
    """The key of ``queue``'s ``FinishedJobRegistry``, from RQ's template."""
    return str(FinishedJobRegistry.key_template.format(queue))


def scheduled_key(queue: str) -> str:
    """The key of ``queue``'s ``ScheduledJobRegistry`` (its constructor is untyped)."""
    return str(ScheduledJobRegistry.key_template.format(queue))


def serializer_named(name: str) -> Serializer:
    """RQ's serializer for ``json`` or ``pickle``."""
    return _SERIALIZERS[name]


def unreadable(job: RqJob) -> str | None:
    """Why ``job``'s call cannot be read with the backend's serializer; None when it can.

    Reading ``func_name`` deserializes the call with the serializer the job was fetched with:
    JSON never executes anything, so a pickled job fails here unread.
    """
    try:
        name = job.func_name
        args, kwargs = job.args, job.kwargs
    except Exception as exc:  # whatever the stored bytes are, say so; never raise past here
        if job.data[:1] == b"\x80" and job.serializer is JSONSerializer:
            return PICKLE_REFUSED
        return f"malformed RQ job: {type(exc).__name__}: {exc}"
    if name == RAW_FUNC:
        return None
    if not name or job.instance is not None:
        return f"{NOT_ALLOWED}: {name!r} (a bound method or no function path)"
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return "malformed RQ job: args or kwargs of the wrong type"
    return None


def body_of(job: RqJob) -> bytes:
    """The Conveyor body for a readable RQ job (see ``unreadable``).

    Raises:
        EncodeError: an argument is not JSON (possible only for a pickled job).
    """
    meta = job.meta or {}
    if RAW in meta:
        return base64.b64decode(meta[RAW])
    stamp = job.enqueued_at or job.created_at
    enqueued = float(meta[ENQUEUED]) if ENQUEUED in meta else stamp.timestamp()
    if ENQUEUED in meta:  # put by Conveyor: its own timeout, exactly, or none
        timeout_s = meta.get(TIMEOUT)
    else:  # put by RQ: the timeout RQ's worker would enforce (-1: none)
        timeout_s = float(job.timeout) if job.timeout and job.timeout > 0 else None
    conveyor_job = Job(
        name=str(job.func_name),
        args=tuple(job.args),
        kwargs=dict(job.kwargs),
        queue=job.origin,
        id=job.id,
        attempt=int(meta.get(ATTEMPT, job.number_of_retries or 0)),
        enqueued_at=enqueued,
        timeout_s=timeout_s,
    )
    return encode_job(conveyor_job)


def call_of(body: bytes) -> tuple[str, list[Any], dict[str, Any], dict[str, Any]]:
    """What to enqueue in RQ for a Conveyor body: function path, args, kwargs, meta."""
    try:
        job = decode_job(body)
    except DecodeError:
        return RAW_FUNC, [], {}, {RAW: base64.b64encode(body).decode()}
    meta: dict[str, Any] = {ENQUEUED: job.enqueued_at}
    if job.attempt:
        meta[ATTEMPT] = job.attempt
    if job.timeout_s is not None:
        meta[TIMEOUT] = job.timeout_s
    return job.name, list(job.args), dict(job.kwargs), meta


def rq_timeout(meta: dict[str, Any]) -> int | None:
    """RQ's ``timeout`` for a job put with ``meta`` (``call_of``): whole seconds, rounded up;
    None: RQ's queue default."""
    return math.ceil(meta[TIMEOUT]) if TIMEOUT in meta else None


def redeliveries_of(job: RqJob) -> int:
    """How many consumers died running ``job`` so far."""
    return int((job.meta or {}).get(REDELIVERIES, 0))


def failure_text(reason: str) -> str:
    """The ``exc_info`` RQ shows for a job Conveyor dead-lettered with ``reason``.

    The worker calls a job missing from its registry ``unknown job ...``; for an RQ job that
    means its function path is not on the allow-list, which is what RQ's users are told.
    """
    if reason.startswith("unknown job"):
        return f"{NOT_ALLOWED}: {reason}"
    timed_out = _TIMED_OUT.search(reason)
    if timed_out:  # and in RQ's own words, as its worker writes a timed-out job's failure
        return (
            f"{reason}\n{_RQ_TIMEOUT}: Task exceeded maximum timeout value ({timed_out[1]} seconds)"
        )
    return reason


_TIMED_OUT = re.compile(r"timed out after (\S+) s\s*$")
"""The worker's last words on a job it stopped at its time limit."""
_RQ_TIMEOUT = "rq.timeouts.JobTimeoutException"


_STATUSES = {
    RqStatus.QUEUED: "queued",
    RqStatus.DEFERRED: "queued",
    RqStatus.SCHEDULED: "scheduled",
    RqStatus.STARTED: "running",
    RqStatus.FINISHED: "done",
    RqStatus.FAILED: "dead",
    RqStatus.STOPPED: "dead",
    RqStatus.CANCELED: "dead",
}


def conveyor_status(status: RqStatus | None, meta: dict[str, Any]) -> str:
    """Conveyor's name for an RQ status; a scheduled job that already ran waits for a retry."""
    if status is None:
        return "queued"
    name = _STATUSES.get(status, "queued")
    if name in ("scheduled", "queued") and int(meta.get(ATTEMPT, 0)) > 0:
        return "failed"  # waiting for its next attempt, as Conveyor's backends say
    return name
