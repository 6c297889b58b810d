"""The fleet's picture, as ``conveyor status --json`` and ``GET /v1/fleet`` show it.

One function builds it (``fleet_view``) from what the backend answers, so the command and the
HTTP route cannot disagree; ``collect`` does the reading on blocking roles (the HTTP service
runs it in a thread). The keys are stable, for scripts::

    {"queues": [{"name", "waiting", "delayed", "in_flight", "done", "dead", "jobs_per_s",
                 "oldest_waiting_s", "paused"}],
     "groups": [{"name", "desired", "alive", "version", "set_by", "set_at", "autoscale",
                 "reason"}],
     "supervisors": [{"id", "host", "pid", "group", "pool", "queues", "processes_desired",
                      "processes_alive", "jobs_running", "jobs_done", "started_at",
                      "last_beat", "lost", "note"}]}

``dead`` is the queue's dead total (settled dead since the backend began); ``jobs_per_s`` is
None until an earlier look left a sample (``services.gauges``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

from services.protocol import DesiredState, FleetControl, QueueInspector, SupervisorRecord
from services.protocol.inspection import QueueGauges

LOST_NOTE = "lost: its jobs are recovered by the lease machinery"
"""What ``status`` says of a supervisor that stopped beating."""


class StatusSource(QueueInspector, QueueGauges, Protocol):
    """What the queue side of the picture is read from."""


def queue_row(source: StatusSource, queue: str, paused: set[str]) -> dict[str, Any]:
    """One queue's line: its counts, jobs/s over the last minute, oldest age, paused."""
    counts = source.counts(queue)
    return {
        "name": queue,
        "waiting": counts.waiting,
        "delayed": counts.delayed,
        "in_flight": counts.in_flight,
        "done": counts.done,
        "dead": counts.dead,
        "jobs_per_s": source.done_rate(queue),
        "oldest_waiting_s": source.oldest_waiting_age(queue),
        "paused": queue in paused,
    }


def group_row(
    name: str, desired: DesiredState | None, members: list[SupervisorRecord]
) -> dict[str, Any]:
    """One group's line: desired against alive (live supervisors only), autoscale, reason."""
    return {
        "name": name,
        "desired": desired.processes if desired else None,
        "alive": sum(r.processes_alive for r in members if r.group == name and not r.lost),
        "version": desired.version if desired else 0,
        "set_by": desired.set_by if desired else "",
        "set_at": desired.set_at if desired else None,
        "autoscale": asdict(desired.autoscale) if desired and desired.autoscale else None,
        "reason": desired.reason if desired else "",
    }


def supervisor_row(record: SupervisorRecord) -> dict[str, Any]:
    """One supervisor's line; a lost one says where its jobs went."""
    row = asdict(record)
    del row["conveyor_version"], row["max_processes"]
    row["queues"] = list(record.queues)
    row["note"] = LOST_NOTE if record.lost else ""
    return row


def fleet_view(fleet: FleetControl, source: StatusSource | None) -> dict[str, Any]:
    """The whole picture; ``source`` None (memory://, read through a control socket) leaves
    the queues out."""
    supervisors = fleet.supervisors()
    paused = fleet.paused()
    queues = sorted(set(source.queues()) | paused) if source is not None else sorted(paused)
    return {
        "queues": [queue_row(source, q, paused) for q in queues] if source is not None else [],
        "groups": [group_row(g, fleet.desired(g), supervisors) for g in fleet.groups()],
        "supervisors": [supervisor_row(r) for r in supervisors],
    }


def group_view(fleet: FleetControl, group: str) -> dict[str, Any] | None:
    """One group's line and its supervisors; None when the fleet does not know the group."""
    if group not in fleet.groups():
        return None
    supervisors = [r for r in fleet.supervisors() if r.group == group]
    row = group_row(group, fleet.desired(group), supervisors)
    row["supervisors"] = [supervisor_row(r) for r in supervisors]
    return row
