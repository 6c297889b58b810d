"""How the stack test puts jobs in and reads their status: the one place that knows.

Over HTTP when the image has ``conveyor serve`` (``POST /v1/queues/{queue}/jobs`` with
``{"job", "args", "job_id"}`` -> 202 ``{"job_id"}``; ``GET /v1/jobs/{id}`` -> ``{"status"}``,
404 for an id the service does not know), from the host to the producer's published port.
Until then, through the documented Python API (``Producer(open_queue(url))``) run inside a
consumer container, which reaches Redis on the compose network as the services do.

Every job carries an id the test chose, so the test's list of ids is the ledger: after any
stop, each of them must still be found, and end done or dead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tests.container.engine import wait_until
from tests.container.features import Features
from tests.container.stack import ComposeStack

QUEUE = "default"


@dataclass(frozen=True)
class JobSpec:
    """One job the test submits: its id, the registered job name and the arguments."""

    job_id: str
    name: str
    args: tuple[Any, ...] = ()


class JobClient(Protocol):
    """Submits jobs and reads their statuses (None: the backend does not know the id)."""

    def submit(self, jobs: Sequence[JobSpec]) -> None: ...

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]: ...


class HttpJobClient:
    """The HTTP API of ``conveyor serve`` at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        for job in jobs:
            body = {"job": job.name, "args": list(job.args), "job_id": job.job_id}
            status, answer = self._call("POST", f"/v1/queues/{QUEUE}/jobs", body)
            assert status == 202, (status, answer)
            assert answer["job_id"] == job.job_id, answer

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for job_id in job_ids:
            status, answer = self._call("GET", f"/v1/jobs/{job_id}")
            assert status in (200, 404), (status, answer)
            found[job_id] = answer["status"] if status == 200 else None
        return found

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


_API = """
import json, sys
from producer import Producer
from services.backends import open_queue
producer = Producer(open_queue("redis://redis:6379/0"), name=sys.argv[2])
"""
_SUBMIT = (
    _API
    + """
for job in json.loads(sys.argv[1]):
    producer.enqueue(job["name"], *job["args"], job_id=job["job_id"])
"""
)
_STATUSES = (
    _API
    + """
found = {job_id: producer.status(job_id) for job_id in json.loads(sys.argv[1])}
print(json.dumps({job_id: s.status if s else None for job_id, s in found.items()}))
"""
)


class ExecJobClient:
    """The Python API, run by ``docker-compose exec`` in the first consumer container."""

    def __init__(self, stack: ComposeStack) -> None:
        self.stack = stack

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        calls = [{"job_id": job.job_id, "name": job.name, "args": list(job.args)} for job in jobs]
        self.stack.exec("consumer", "python", "-c", _SUBMIT, json.dumps(calls), QUEUE)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        out = self.stack.exec("consumer", "python", "-c", _STATUSES, json.dumps(job_ids), QUEUE)
        found: dict[str, str | None] = json.loads(out.strip().splitlines()[-1])
        return found


def wait_settled(
    client: JobClient, jobs: Sequence[JobSpec], *, deadline_s: float
) -> dict[str, str | None]:
    """Poll until every job in ``jobs`` is done or dead; their statuses."""
    seen: dict[str, str | None] = {}

    def all_final() -> bool:
        seen.update(client.statuses([job.job_id for job in jobs]))
        return all(status in ("done", "dead") for status in seen.values())

    wait_until(all_final, deadline_s=deadline_s, what="every job to end done or dead")
    return seen


def job_client(stack: ComposeStack, features: Features, *, http_port: int) -> JobClient:
    """HTTP once the image serves it, else the Python API inside the stack."""
    if features.serve:
        return HttpJobClient(f"http://127.0.0.1:{http_port}")
    return ExecJobClient(stack)
