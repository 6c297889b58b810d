"""``FleetService``: the fleet routes' operations, on a blocking backend run in threads.

The fleet store (``FleetControl``) and the gauges of ``services.fleet_view`` have no asyncio
form, so every call here runs the blocking Redis calls in the default thread pool
(``asyncio.to_thread``) and never on the event loop. The picture comes from
``services.fleet_view``, the one ``conveyor status --json`` prints.
"""

from __future__ import annotations

import asyncio
from typing import Any

from producer.http.fleet_models import GroupIn
from producer.http.problems import InvalidRequest, NotFound
from services.fleet_view import fleet_view, group_view
from services.protocol import AutoscaleSettings, Backend
from services.protocol.inspection import QueueGauges

SET_BY = "conveyor serve"
"""Who a total set over HTTP is recorded as set by."""


class FleetService:
    """The fleet's picture and group totals, read and set through ``backend`` (owned)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def view(self) -> dict[str, Any]:
        """Queues, groups and supervisors (``services.fleet_view``)."""
        return await asyncio.to_thread(self._view)

    async def group(self, group: str) -> dict[str, Any]:
        """One group and its supervisors; ``NotFound`` when the fleet does not know it."""
        found = await asyncio.to_thread(group_view, self._backend.fleet(), group)
        if found is None:
            raise NotFound(f"no group {group!r}: no desired total and no supervisor")
        return found

    async def scale(self, group: str, body: GroupIn) -> dict[str, Any]:
        """Store the group's new total (and autoscale bounds, or autoscale off)."""
        try:
            bounds = AutoscaleSettings(**body.autoscale.model_dump()) if body.autoscale else None
            await asyncio.to_thread(self._set, group, body.processes, bounds)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return await self.group(group)

    async def pause(self, queue: str) -> bool:
        """Pause ``queue`` (``conveyor pause``); False when it was paused already."""
        fleet = self._backend.fleet()
        return await asyncio.to_thread(fleet.pause, queue, set_by=SET_BY)

    async def resume(self, queue: str) -> bool:
        """Resume ``queue`` (``conveyor resume``); False when it was not paused."""
        return await asyncio.to_thread(self._backend.fleet().resume, queue)

    async def close(self) -> None:
        await asyncio.to_thread(self._backend.close)

    def _view(self) -> dict[str, Any]:
        backend = self._backend
        return fleet_view(backend.fleet(), backend if isinstance(backend, QueueGauges) else None)

    def _set(self, group: str, processes: int, bounds: AutoscaleSettings | None) -> None:
        reason = f"set to {processes} over HTTP" if bounds else ""
        fleet = self._backend.fleet()
        fleet.set_desired(group, processes, set_by=SET_BY, autoscale=bounds, reason=reason)
