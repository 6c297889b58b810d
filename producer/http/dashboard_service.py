"""``DashboardService``: what the dashboard's pages read, on a blocking backend run in threads.

One aggregated read per page refresh: ``overview`` is the fleet's picture (``services.
fleet_view``, the one ``GET /v1/fleet`` and ``conveyor status`` show) plus the hour and day
charts (``charts``) from the backend's history, all in one answer so a polling page costs one
request. ``periodics`` and ``limits`` describe the registry ``conveyor serve --jobs`` loaded,
with the backend's last due times fired.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any, Protocol

from producer.http.charts import series
from services.fleet_view import fleet_view
from services.periodic import schedule_group, schedule_of
from services.protocol import Backend
from services.protocol.history import MINUTE, QUARTER, KeepsHistory, Snapshot
from services.protocol.inspection import QueueGauges
from services.registry import Registry

HOUR_POINTS = 60
DAY_POINTS = 96


class DashboardBackend(Backend, QueueGauges, KeepsHistory, Protocol):
    """What the dashboard reads: every role, the gauges and the history."""


def current(row: dict[str, Any]) -> Snapshot:
    """The snapshot of a queue row of the fleet view (its totals now)."""
    return Snapshot(
        done=row["done"],
        dead=row["dead"],
        waiting=row["waiting"],
        delayed=row["delayed"],
        in_flight=row["in_flight"],
        oldest_waiting_ms=round((row["oldest_waiting_s"] or 0) * 1000),
    )


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
        view = fleet_view(self._backend.fleet(), self._backend)
        rows = [r for r in view["queues"] if queue is None or r["name"] == queue]
        now_at = {r["name"]: current(r) for r in rows}
        names = sorted(now_at) if queue is None else [queue]
        store = self._backend.history_store()
        charts = {
            label: series(
                store.history(names, resolution),
                resolution,
                now=now,
                points=points,
                current=now_at,
            )
            for label, resolution, points in (
                ("hour", MINUTE, HOUR_POINTS),
                ("day", QUARTER, DAY_POINTS),
            )
        }
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

    def limits(self) -> dict[str, Any]:
        """The limits the registry's jobs declare, each with the jobs that share it."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for spec in self._registry or ():
            for limit in spec.limits:
                kind = type(limit).__name__.removesuffix("Limit").lower()
                entry = found.setdefault((kind, limit.key), {"kind": kind, **asdict(limit)})
                entry.setdefault("jobs", []).append(spec.name)
        return {"registry": self._registry is not None, "limits": list(found.values())}
