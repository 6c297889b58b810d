"""``DashboardService``: what the dashboard's pages read, on a blocking backend run in threads.

One aggregated read per page refresh: ``overview`` is the fleet's picture (the shape of ``GET
/v1/fleet``: groups and supervisors from ``services.fleet_view``, the queues' numbers for all
queues at once from ``HistoryStore.look``) plus the hour and day charts (``charts``) from the
backend's history, all in one answer so a polling page costs one request and a few round trips
whatever the number of queues (``scripts/bench_dashboard.py`` measures it). ``periodics`` and
``limits`` describe the registry ``conveyor serve --jobs`` loaded, with the backend's last due
times fired.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any, Protocol

from producer.http.charts import percentiles, recent_rate, series
from producer.http.problems import NotFound
from services.codec import decode_job
from services.errors import ConveyorError
from services.fleet_view import fleet_view
from services.limits import Limit
from services.periodic import schedule_group, schedule_of
from services.protocol import Backend, Listed, QueueBrowser
from services.protocol.browsing import WAITING
from services.protocol.history import MINUTE, QUARTER, Bucket, KeepsHistory, Snapshot
from services.protocol.limit_usage import LimitInspector
from services.registry import Registry

HOUR_POINTS = 60
DAY_POINTS = 96


class DashboardBackend(Backend, KeepsHistory, Protocol):
    """What the dashboard reads: every role and the history."""


def listed_row(listed: Listed) -> dict[str, Any]:
    """A listed job as the page shows it: its name, arguments and times from its body (None
    where the body is not a job's)."""
    try:
        job = decode_job(listed.body)
    except ConveyorError:
        job = None
    return {
        "job_id": listed.job_id,
        "job": job.name if job else None,
        "args": list(job.args) if job else None,
        "kwargs": dict(job.kwargs) if job else None,
        "attempt": job.attempt if job else None,
        "enqueued_at": job.enqueued_at if job else None,
        "due_at": listed.due_at,
        "redeliveries": listed.redeliveries,
    }


def queue_row(
    name: str, now_at: Snapshot, minutes: list[Bucket], now: float, paused: bool
) -> dict[str, Any]:
    """A queue's line, as ``GET /v1/fleet`` has it; jobs/s from the history's minutes (one
    read for every queue, instead of the done-rate ring read queue by queue)."""
    return {
        "name": name,
        "waiting": now_at.waiting,
        "delayed": now_at.delayed,
        "in_flight": now_at.in_flight,
        "done": now_at.done,
        "dead": now_at.dead,
        "jobs_per_s": recent_rate(minutes, now, now_at.done),
        "oldest_waiting_s": now_at.oldest_waiting_ms / 1000 if now_at.waiting else None,
        "paused": paused,
    }


class DashboardService:
    """The dashboard's reads on ``backend`` (shared with the fleet routes, not owned)."""

    def __init__(
        self, backend: DashboardBackend, registry: Registry | None, *, read_only: bool
    ) -> None:
        self._backend = backend
        self._registry = registry
        self.read_only = read_only

    async def overview(self, queue: str | None) -> dict[str, Any]:
        """The fleet's picture and the charts of ``queue`` (None: every queue summed)."""
        return await asyncio.to_thread(self._overview, queue)

    def _overview(self, queue: str | None) -> dict[str, Any]:
        now = time.time()
        fleet = self._backend.fleet()
        view = fleet_view(fleet, None)  # groups and supervisors; the queues are read below
        paused = fleet.paused()
        names = sorted(set(self._backend.queues()) | paused)
        store = self._backend.history_store()
        now_at = store.look(names)
        minutes = store.history(names, MINUTE)
        view["queues"] = [queue_row(q, now_at[q], minutes[q], now, q in paused) for q in names]
        charted = names if queue is None else [queue]
        current = {q: now_at[q] for q in charted if q in now_at}
        charts = {
            "hour": series(
                {q: minutes.get(q, []) for q in charted},
                MINUTE,
                now=now,
                points=HOUR_POINTS,
                current=current,
            ),
            "day": series(
                store.history(charted, QUARTER),
                QUARTER,
                now=now,
                points=DAY_POINTS,
                current=current,
            ),
        }
        for name, resolution, points in (
            ("hour", MINUTE, HOUR_POINTS),
            ("day", QUARTER, DAY_POINTS),
        ):
            latency = store.latency_history(resolution)  # fleet-wide: not per queue
            charts[name].update(percentiles(latency, resolution, now=now, points=points))
        return {"now": now, "read_only": self.read_only, "fleet": view, "charts": charts}

    async def periodics(self) -> dict[str, Any]:
        """The registry's periodic entries: schedule, queue, last and next run; the leader."""
        return await asyncio.to_thread(self._periodics)

    def _periodics(self) -> dict[str, Any]:
        specs = self._registry.periodics() if self._registry is not None else []
        last = self._backend.last_fired([s.name for s in specs]) if specs else {}
        now = time.time()
        entries = [
            {
                "name": s.name,
                "job": s.job,
                "queue": s.queue,
                "schedule": schedule_of(s.schedule).text,
                "missed": s.missed,
                "last_run": last.get(s.name),
                "next_run": schedule_of(s.schedule).next_after(now),
            }
            for s in specs
        ]
        leader = self._backend.leader(group=schedule_group(specs)) if specs else None
        return {"registry": self._registry is not None, "periodics": entries, "leader": leader}

    async def jobs(self, queue: str, state: str, offset: int, limit: int) -> dict[str, Any]:
        """A page of ``queue``'s waiting or delayed jobs, decoded, and how many there are."""
        return await asyncio.to_thread(self._jobs, queue, state, offset, limit)

    def _jobs(self, queue: str, state: str, offset: int, limit: int) -> dict[str, Any]:
        backend = self._backend
        if not isinstance(backend, QueueBrowser):
            raise NotFound("this backend cannot list a queue's jobs")
        counts = backend.counts(queue)
        page = backend.browse(queue, state, offset=offset, limit=limit)
        return {
            "queue": queue,
            "state": state,
            "offset": offset,
            "total": counts.waiting if state == WAITING else counts.delayed,
            "jobs": [listed_row(one) for one in page],
        }

    async def limits(self) -> dict[str, Any]:
        """The limits the registry's jobs declare, each with the jobs that share it and, where
        the backend can tell, the permits held and the jobs parked now."""
        return await asyncio.to_thread(self._limits)

    def _limits(self) -> dict[str, Any]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        declared: list[Limit] = []
        for spec in self._registry or ():
            for limit in spec.limits:
                kind = type(limit).__name__.removesuffix("Limit").lower()
                if (kind, limit.key) not in found:
                    declared.append(limit)
                entry = found.setdefault((kind, limit.key), {"kind": kind, **asdict(limit)})
                entry.setdefault("jobs", []).append(spec.name)
        if isinstance(self._backend, LimitInspector):
            for use in self._backend.limit_usage(declared):
                found[(use.kind, use.key)].update(held=use.held, parked=use.parked)
        return {"registry": self._registry is not None, "limits": list(found.values())}
