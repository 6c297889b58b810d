"""The JSON answers of the dashboard's routes (``routes.dashboard``) and of pausing a queue,
as pydantic models: the shapes ``/openapi.json`` documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from producer.http.fleet_models import FleetOut


class ChartOut(BaseModel):
    resolution: str = Field(description="minute (the hour chart) or quarter (the day chart).")
    width_s: int
    t: list[int] = Field(description="Bucket starts, epoch seconds, oldest first.")
    done_per_s: list[float | None] = Field(description="Null: no sample (a gap).")
    dead_per_s: list[float | None]
    backlog: list[float | None] = Field(description="Waiting + delayed, the bucket's largest.")
    in_flight: list[float | None]
    latency_s: list[float | None] = Field(description="Age of the oldest waiting job, largest.")
    start_p50_s: list[float | None] = Field(
        description="Enqueue-to-start median of the jobs started in the bucket, every queue "
        "(the workers' histogram is fleet-wide); null: none started."
    )
    start_p95_s: list[float | None]
    start_p99_s: list[float | None]


class DashboardOut(BaseModel):
    now: float
    read_only: bool = Field(description="The dashboard shows no actions (and may take none).")
    fleet: FleetOut
    charts: dict[str, ChartOut] = Field(description="hour and day.")


class PeriodicOut(BaseModel):
    name: str
    job: str
    queue: str
    schedule: str
    missed: str
    last_run: float | None
    next_run: float


class PeriodicsOut(BaseModel):
    registry: bool = Field(description="False: the service was started without --jobs.")
    periodics: list[PeriodicOut]
    leader: str | None


class LimitsOut(BaseModel):
    registry: bool
    limits: list[dict[str, Any]] = Field(
        description="kind, key, permits or count/period_s, jobs; held and parked now."
    )


class PauseOut(BaseModel):
    queue: str
    paused: bool
    changed: bool = Field(description="False: it already was (or was not) paused.")


class ListedOut(BaseModel):
    job_id: str
    job: str | None = Field(description="Null: the body is not a job's.")
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    attempt: int | None
    enqueued_at: float | None
    due_at: float | None = Field(description="Delayed jobs: when due (epoch seconds).")
    redeliveries: int


class JobsPageOut(BaseModel):
    queue: str
    state: str
    offset: int
    total: int = Field(description="Jobs in that state now.")
    jobs: list[ListedOut]
