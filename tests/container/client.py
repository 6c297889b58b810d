"""How the stack tests put jobs in and read their status: the HTTP API of ``conveyor serve``,
from the host to the producer's published port.

``POST /v1/queues/{queue}/jobs`` with ``{"job", "args", "job_id"}`` -> 202 ``{"job_id"}``;
``GET /v1/jobs/{id}`` -> ``{"status"}``, 404 for an id the service does not know.

Every job carries an id the test chose, so the test's list of ids is the ledger: after any
stop, each of them must still be found, and end done or dead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.container.engine import wait_until

QUEUE = "default"


@dataclass(frozen=True)
class JobSpec:
    """One job the test submits: its id, the registered job name and the arguments."""

    job_id: str
    name: str
    args: tuple[Any, ...] = ()


class JobsApi:
    """The HTTP API of ``conveyor serve`` at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        """POST each job; each must be accepted (202) under the id the test gave it."""
        for job in jobs:
            body = {"job": job.name, "args": list(job.args), "job_id": job.job_id}
            status, answer = self._call("POST", f"/v1/queues/{QUEUE}/jobs", body)
            assert status == 202, (status, answer)
            assert answer["job_id"] == job.job_id, answer

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Each job's status; None for an id the service does not know (404)."""
        found: dict[str, str | None] = {}
        for job_id in job_ids:
            status, answer = self._call("GET", f"/v1/jobs/{job_id}")
            assert status in (200, 404), (status, answer)
            found[job_id] = answer["status"] if status == 200 else None
        return found

    def wait_settled(self, jobs: Sequence[JobSpec], *, deadline_s: float) -> dict[str, str | None]:
        """Poll until every job in ``jobs`` is done or dead; their statuses."""
        seen: dict[str, str | None] = {}

        def all_final() -> bool:
            seen.update(self.statuses([job.job_id for job in jobs]))
            return all(status in ("done", "dead") for status in seen.values())

        wait_until(all_final, deadline_s=deadline_s, what="every job to end done or dead")
        return seen

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"{}")
