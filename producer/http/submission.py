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
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.http.problems import InvalidBatch, InvalidRequest, PayloadTooLarge, problem_of
from services.codec import MAX_BODY_BYTES, encode_job
from services.errors import ConveyorError
from services.job import Job
from services.names import check_job_id, check_queue_name
from services.registry import Registry

MAX_BATCH_ERRORS = 20
"""Invalid jobs of a batch listed in the error's details at most (the count is exact)."""


@dataclass(frozen=True)
class JobRequest:
    """One job as a client asks for it."""

    job: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None


@dataclass(frozen=True)
class Encoded:
    """A checked job, ready to put: its id and its body."""

    job_id: str
    body: bytes
    generated: bool
    """The id was generated here (never put before), not chosen by the client."""


def new_id() -> str:
    """A fresh job id like ``services.job.new_job_id``'s (32 random hex digits, stored compact
    by the Redis backend) at a quarter of uuid4's cost, which shows on a one-job submission."""
    return os.urandom(16).hex()


def key_job_id(key: str, index: int | None = None) -> str:
    """The job id an ``Idempotency-Key`` stands for (the ``index``-th job of a batch)."""
    if index is None:
        try:
            return check_job_id(key)
        except ConveyorError:
            pass
    material = key if index is None else f"{key}\n{index}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def chosen_id(request: JobRequest, key: str | None, index: int | None = None) -> str | None:
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
    """Checks and encodes the jobs of requests to one service (its registry, its caps)."""

    def __init__(self, registry: Registry | None, *, max_job_bytes: int = MAX_BODY_BYTES) -> None:
        self._registry = registry
        self._max_job_bytes = max_job_bytes

    def encode(self, queue: str, request: JobRequest, job_id: str | None) -> Encoded:
        """The job ``request`` asks for on ``queue``, with ``job_id`` (None: generated).

        Raises:
            InvalidNameError, UnknownJobError, JobArgumentsError, EncodeError: as
                ``Producer.enqueue``; PayloadTooLarge: the encoded job is over its cap.
        """
        if self._registry is not None:
            spec = self._registry.get(request.job)
            spec.check_arguments(tuple(request.args), dict(request.kwargs))
        args, kwargs = tuple(request.args), request.kwargs
        job = Job(request.job, args, kwargs, queue, id=job_id or new_id())
        body = encode_job(job, max_bytes=2**62)  # the cap is ours to report, as a 413
        if len(body) > self._max_job_bytes:
            raise PayloadTooLarge(
                f"job {request.job!r} encodes to {len(body)} bytes, over the "
                f"{self._max_job_bytes}-byte limit of one job"
            )
        return Encoded(job.id, body, generated=job_id is None)

    def encode_one(self, queue: str, request: JobRequest, key: str | None) -> Encoded:
        """One job of a single submission (``chosen_id`` says its id)."""
        return self.encode(check_queue_name(queue), request, chosen_id(request, key))

    def encode_batch(
        self, queue: str, requests: Sequence[JobRequest], key: str | None
    ) -> list[Encoded]:
        """Every job of a batch, or ``InvalidBatch`` naming the invalid ones (none is sent).

        A batch that fails as a whole for a single reason (its queue name) raises that.
        """
        check_queue_name(queue)
        encoded: list[Encoded] = []
        failures: list[dict[str, Any]] = []
        for index, request in enumerate(requests):
            try:
                encoded.append(self.encode(queue, request, chosen_id(request, key, index)))
            except ConveyorError as exc:
                problem = problem_of(exc)
                failures.append({"index": index, "code": problem.code, "message": str(exc)})
        if failures:
            raise InvalidBatch(
                f"{len(failures)} of {len(requests)} jobs are invalid; none was enqueued",
                details=failures[:MAX_BATCH_ERRORS],
            )
        return encoded
