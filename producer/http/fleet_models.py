"""The JSON bodies of the fleet routes (``routes.fleet``), as pydantic models: the shapes
``services.fleet_view`` builds (the same as ``conveyor status --json``), and the body of
``PUT /v1/groups/{group}``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from producer.http.models import QueueOut

MAX_PROCESSES = 10_000
"""The largest total a request may set (a typo such as 1e9 is a 422, not a plan)."""


class AutoscaleIn(BaseModel):
    """Autoscale bounds (``conveyor scale GROUP --auto``): totals across the fleet."""

    model_config = ConfigDict(extra="forbid")

    minimum: int = Field(ge=0, le=MAX_PROCESSES)
    maximum: int = Field(ge=1, le=MAX_PROCESSES)
    backlog_per_worker: int = Field(ge=1, le=1_000_000_000)
    stabilization_s: float = Field(default=60.0, ge=0, le=86_400, allow_inf_nan=False)
    tolerance: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False)


class GroupIn(BaseModel):
    """The group's new total; with ``autoscale``, the autoscaler owns it from there (the total
    must lie within the bounds); without, autoscale is off."""

    model_config = ConfigDict(extra="forbid")

    processes: int = Field(ge=0, le=MAX_PROCESSES, description="Worker processes in all.")
    autoscale: AutoscaleIn | None = None


class AutoscaleOut(BaseModel):
    minimum: int
    maximum: int
    backlog_per_worker: int
    stabilization_s: float
    tolerance: float


class FleetQueueOut(QueueOut):
    jobs_per_s: float | None = Field(description="Over the last minute; null until known.")
    oldest_waiting_s: float | None = Field(description="Age of the head job; null: none waits.")
    paused: bool


class SupervisorOut(BaseModel):
    id: str
    group: str
    host: str
    pid: int
    queues: list[str]
    pool: str
    processes_desired: int
    processes_alive: int
    jobs_running: int
    jobs_done: int
    started_at: float
    last_beat: float
    lost: bool
    note: str = Field(description="Set when lost: its jobs are recovered by the leases.")


class GroupRowOut(BaseModel):
    name: str
    desired: int | None = Field(description="Null: nobody set a total yet.")
    alive: int = Field(description="Worker processes of its live supervisors.")
    version: int
    set_by: str
    set_at: float | None
    autoscale: AutoscaleOut | None
    reason: str = Field(description="Why this total (the autoscaler's last decision).")


class GroupOut(GroupRowOut):
    supervisors: list[SupervisorOut]


class FleetOut(BaseModel):
    queues: list[FleetQueueOut]
    groups: list[GroupRowOut]
    supervisors: list[SupervisorOut]
