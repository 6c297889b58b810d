"""From what a client asks to encoded jobs: names, arguments and ids checked, bodies made.

Framework-free and synchronous (a few microseconds a job, no IO). A request is checked exactly
as ``Producer.enqueue`` checks a call: the id against ``services.names``, the name and the
arguments against the registry when the service has one, the arguments by encoding them with
the one codec. Nothing reaches the backend unless every job of the request passed.

**Job ids and idempotency.** A request may name its job's id (``job_id``) or carry an
``Idempotency-Key``; both make a retried request find the job the first one stored instead of
storing a second (backends put if absent by id). A key that is itself a valid job id is the
id; any other key gives ``key_job_id(key)``, 32 hex digits of its SHA-256, so the same key
always means the same job. The ``i``-th job of a batch sent with a key gets
``key_job_id(key, i)`` unless it names its own id. Without either, ids are generated.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from producer.http.problems import InvalidBatch, InvalidRequest, PayloadTooLarge, problem_of
from services.codec import MAX_BODY_BYTES, encode_job
from services.errors import ConveyorError
from services.job import Job, new_job_ids
from services.names import check_job_id, check_queue_name
from services.registry import Registry
from services.unique_keys import Uniqueness, uniqueness

MAX_BATCH_ERRORS = 20
"""Invalid jobs of a batch listed in the error's details at most (the count is exact)."""
MAX_SHAPES = 4096
"""Argument shapes remembered per service (``Submission``); past that the memo starts over."""


class JobAsked(Protocol):
    """One job as a client asks for it (``JobRequest``, or the API's parsed body)."""

    @property
    def job(self) -> str: ...
    @property
    def args(self) -> Sequence[Any]: ...
    @property
    def kwargs(self) -> Mapping[str, Any]: ...
    @property
    def job_id(self) -> str | None: ...


@dataclass(frozen=True)
class JobRequest:
    """One job as a client asks for it."""

    job: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None


class Encoded(NamedTuple):
    """A checked job, ready to put: its id and its body (a tuple: a batch makes thousands)."""

    job_id: str
    body: bytes
    generated: bool
    """The id was generated here (never put before), not chosen by the client."""


def key_job_id(key: str, index: int | None = None) -> str:
    """The job id an ``Idempotency-Key`` stands for (the ``index``-th job of a batch)."""
    if index is None:
        try:
            return check_job_id(key)
        except ConveyorError:
            pass
    material = key if index is None else f"{key}\n{index}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def chosen_id(request: JobAsked, key: str | None, index: int | None = None) -> str | None:
    """The id ``request`` asks for: its own, else its key's, else None (generate one).

    Raises:
        InvalidRequest: a single job names an id other than the one its key stands for.
    """
    if request.job_id is not None:
        own = check_job_id(request.job_id)
        if key is not None and index is None and key_job_id(key) != own:
            raise InvalidRequest(
                f"job_id {own!r} and the Idempotency-Key name different jobs: send one of them "
                "(or a key equal to the job id)"
            )
        return own
    return None if key is None else key_job_id(key, index)


class Submission:
    """Checks and encodes the jobs of requests to one service (its registry, its caps).

    Whether arguments fit a job function depends only on their *shape*: how many positional
    ones and which keyword names (``inspect.Signature.bind`` looks at nothing else). The
    registry's check runs once per shape, on stand-in values, and its verdict is remembered:
    binding costs a few microseconds a job, as much as encoding it.
    """

    def __init__(self, registry: Registry | None, *, max_job_bytes: int = MAX_BODY_BYTES) -> None:
        self._registry = registry
        self._max_job_bytes = max_job_bytes
        self._verdicts: dict[tuple[str, int, tuple[str, ...]], tuple[type[ConveyorError], str]] = {}

    def _check(self, request: JobAsked) -> None:
        """Raise what the registry says of ``request``'s name and arguments (if it has one)."""
        if self._registry is None:
            return
        kwargs = request.kwargs
        shape = (request.job, len(request.args), tuple(kwargs) if kwargs else ())
        verdict = self._verdicts.get(shape)
        if verdict is None:
            if len(self._verdicts) >= MAX_SHAPES:
                self._verdicts.clear()
            verdict = self._verdicts[shape] = self._verdict(request)
        kind, message = verdict
        if message:
            raise kind(message)  # a new one each time: a raised error keeps its traceback

    def _verdict(self, request: JobAsked) -> tuple[type[ConveyorError], str]:
        """The error the registry raises for ``request``'s shape, as (class, message); an
        empty message when the arguments fit."""
        assert self._registry is not None
        try:
            spec = self._registry.get(request.job)
            spec.check_arguments((None,) * len(request.args), dict.fromkeys(request.kwargs))
        except ConveyorError as exc:
            return type(exc), str(exc)
        return ConveyorError, ""

    def uniqueness(self, request: JobAsked, unique_key: str | None) -> Uniqueness | None:
        """What makes ``request`` unique (its ``unique_key``, or its job registered unique),
        or None (``services.unique_keys``)."""
        if unique_key is None and self._registry is None:
            return None
        return uniqueness(self._registry, request.job, (request.args, request.kwargs), unique_key)

    def encode(
        self, queue: str, request: JobAsked, job_id: str | None, fresh: Iterator[str], now: float
    ) -> Encoded:
        """The job ``request`` asks for on ``queue``, with ``job_id`` (None: the next of
        ``fresh``), enqueued at ``now``; not checked (``_check``).

        Raises:
            EncodeError: an argument does not encode; PayloadTooLarge: over the job cap.
        """
        args = tuple(request.args)
        job = Job(request.job, args, request.kwargs, queue, job_id or next(fresh), 0, now)
        body = encode_job(job, max_bytes=2**62)  # the cap is ours to report, as a 413
        if len(body) > self._max_job_bytes:
            raise PayloadTooLarge(
                f"job {request.job!r} encodes to {len(body)} bytes, over the "
                f"{self._max_job_bytes}-byte limit of one job"
            )
        return Encoded(job.id, body, generated=job_id is None)

    def encode_one(self, queue: str, request: JobAsked, key: str | None) -> Encoded:
        """One job of a single submission, checked like ``Producer.enqueue`` checks a call.

        Raises:
            InvalidNameError, UnknownJobError, JobArgumentsError, EncodeError,
            PayloadTooLarge, InvalidRequest (its id and key disagree).
        """
        check_queue_name(queue)
        chosen = chosen_id(request, key)
        self._check(request)
        return self.encode(queue, request, chosen, iter(new_job_ids(1)), time.time())

    def encode_batch(
        self, queue: str, requests: Sequence[JobAsked], key: str | None
    ) -> list[Encoded]:
        """Every job of a batch, or ``InvalidBatch`` naming the invalid ones (none is sent).

        A batch that fails as a whole for a single reason (its queue name) raises that.
        """
        check_queue_name(queue)
        fresh = iter(new_job_ids(len(requests)))
        now = time.time()  # the jobs of one request are enqueued together
        encoded: list[Encoded] = []
        failures: list[dict[str, Any]] = []
        check, encode = self._check, self.encode  # a thousand calls: bound once
        for index, request in enumerate(requests):
            try:
                chosen = None
                if request.job_id is not None or key is not None:
                    chosen = chosen_id(request, key, index)
                check(request)
                encoded.append(encode(queue, request, chosen, fresh, now))
            except ConveyorError as exc:
                failures.append({"index": index, "code": problem_of(exc).code, "message": str(exc)})
        if failures:
            raise InvalidBatch(
                f"{len(failures)} of {len(requests)} jobs are invalid; none was enqueued",
                details=failures[:MAX_BATCH_ERRORS],
            )
        return encoded
