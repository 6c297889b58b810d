"""The JSON bodies of the HTTP API as pydantic models: FastAPI parses and checks requests with
them and generates the OpenAPI document from them, so the two cannot disagree.

Request models forbid unknown fields (a typo such as ``"kwarg"`` is a 422, not an argument
silently dropped). Responses are rendered by the routes straight to JSON (``errors.json_response``);
the response models here document them, and schemathesis checks that they match.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.names import NAME_PATTERN

MAX_DELAY_S = 366 * 24 * 3600.0
Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["default"])]
"""A queue name or job id (``services.names``)."""
Delay = Annotated[
    float,
    Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False, description="Seconds before it may run."),
]
JobState = Literal["queued", "scheduled", "running", "failed", "done", "dead"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobIn(_Strict):
    """One job: a registered job name and the JSON arguments to call it with."""

    job: str = Field(min_length=1, max_length=256, description="The registered job name.")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    job_id: Name | None = Field(
        default=None,
        description="Give the job this id; a job already holding it makes this a no-op "
        "(the answer says new: false). Same effect as an Idempotency-Key.",
    )


class SubmitIn(JobIn):
    """One job to put on the queue of the path."""

    delay_s: Delay = 0.0
    unique_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Make the job unique: while a job put with this key on the queue is "
        "queued, delayed, running or waiting for a retry, nothing is stored and the answer "
        "names that job (new: false). Jobs registered unique get a key from their name and "
        "arguments without it.",
    )


class BatchIn(_Strict):
    """Jobs to put together: all are checked first; one invalid job, and none is put."""

    jobs: list[JobIn] = Field(min_length=1)
    delay_s: Delay = 0.0


class SubmitOut(BaseModel):
    job_id: str
    queue: str
    new: bool = Field(description="False: a job with this id was there already (a retry).")


class BatchJobOut(BaseModel):
    job_id: str
    new: bool


class BatchOut(BaseModel):
    queue: str
    count: int
    new_count: int
    jobs: list[BatchJobOut]


class JobOut(BaseModel):
    job_id: str
    status: JobState
    attempts: int
    error: str | None = Field(description="The last error, or why it is dead ('cancelled').")
    result: Any = Field(default=None, description="The job's return value, as JSON.")


class CancelOut(BaseModel):
    job_id: str
    cancelled: Literal[True]
    status: Literal["dead"]


class AbortOut(BaseModel):
    job_id: str
    cancelled: Literal[True]
    status: Literal["dead", "running"] = Field(
        description="'dead': it was waiting and is cancelled; 'running': its worker was asked "
        "to stop it, and it ends dead with the error 'aborted ...' within about a second."
    )


class QueueOut(BaseModel):
    name: str
    waiting: int
    delayed: int
    in_flight: int
    done: int = Field(description="Settled done, in total.")
    dead: int = Field(description="Dead-lettered or cancelled, in total.")


class QueuesOut(BaseModel):
    queues: list[QueueOut]


class LetterOut(BaseModel):
    job_id: str
    reason: str
    failed_at: float = Field(description="Unix time, seconds.")
    job: str | None = Field(description="The job's name; null when its body is unreadable.")
    args: list[Any] | None
    kwargs: dict[str, Any] | None


class LettersOut(BaseModel):
    queue: str
    dead_letters: list[LetterOut]


class RequeueIn(_Strict):
    job_ids: list[Name] | None = Field(default=None, description="Omitted: every dead letter.")


class RequeueOut(BaseModel):
    requeued: int


class DeleteOut(BaseModel):
    deleted: int


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    warnings: list[str] = Field(description="Unsafe but working: e.g. Redis without persistence.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs: see producer.http.problems.")
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorDetail
