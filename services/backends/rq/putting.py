"""Putting Conveyor jobs on RQ's queues, unique keys, waiting for a job to finish.

A put is RQ's own enqueue with ``unique=True`` (RQ's atomic put-if-absent by id: a job is
stored once while its hash lives), or ``schedule_job`` for a delay; the job name is RQ's
function path (``mapping.call_of``). Unique keys have no place in RQ's model: the holder's id
sits in ``cv:rq:{<queue>}:u:<key>``. It is not atomic across racing producers: two racing puts
of one key may both store a job; one of them holds the key afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq.exceptions import DuplicateJobError
from rq.queue import Queue

from services.backends.rq.mapping import call_of, rq_timeout, text
from services.protocol import JobStatus

LIVE = frozenset({"queued", "scheduled", "running", "failed"})
"""Statuses of a job that still holds its unique key."""


def put_many(
    rq_queue: Queue, items: Sequence[tuple[str, bytes]], *, delay_s: float = 0.0
) -> list[bool]:
    """Enqueue the items whose ids are absent from RQ, one flag per item (False: present)."""
    when = datetime.now(UTC) + timedelta(seconds=delay_s)
    flags: list[bool] = []
    seen: set[str] = set()
    for job_id, body in items:
        if job_id in seen:
            flags.append(False)
            continue
        seen.add(job_id)
        func, args, kwargs, meta = call_of(body)
        rq_job = rq_queue.create_job(
            func, args=args, kwargs=kwargs, job_id=job_id, meta=meta, timeout=rq_timeout(meta)
        )
        try:
            if delay_s > 0:
                rq_queue.schedule_job(rq_job, when, unique=True)
            else:
                rq_queue.enqueue_job(rq_job, unique=True)
        except DuplicateJobError:
            flags.append(False)
            continue
        flags.append(True)
    return flags


def holder(connection: Redis, queue: str, key: str) -> str | None:
    """The id of the job that took unique ``key`` on ``queue`` last, if any."""
    found = connection.get(_key_of(queue, key))
    return None if found is None else text(found)


def hold(connection: Redis, queue: str, key: str, job_id: str, ttl_s: float | None) -> None:
    """Record ``job_id`` as the holder of ``key``, for ``ttl_s`` (None: until replaced)."""
    ttl = None if ttl_s is None else max(1, math.ceil(ttl_s))
    connection.set(_key_of(queue, key), job_id, ex=ttl)


def _key_of(queue: str, key: str) -> str:
    return f"cv:rq:{{{queue}}}:u:{key}"


def wait_finished(
    status: Callable[[str], JobStatus | None], job_id: str, timeout_s: float
) -> JobStatus | None:
    """Poll ``status`` (RQ keeps no wake-up list) until the job is done or dead."""
    deadline = time.monotonic() + timeout_s
    pause = 0.01
    while True:
        found = status(job_id)
        if found is not None and found.status in ("done", "dead"):
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.2)
