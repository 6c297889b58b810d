"""Abort requests on Redis: ``T ab``, one hash per queue, and the two scripts that use it.

``abort`` on a running job (its id in ``T running``) runs ABORT, which records a request in
``T ab``: id key -> where the job's waiting marker would be (3 hex digits of the bucket, then
the 7-byte field: ``keys.fingerprint``). A worker with jobs running asks ABORTED, per queue,
which of them have a request (one call; an empty hash answers at once). ABORTED also drops the
requests whose jobs have left the backend's hands: neither running nor waiting (no marker), so
a request outlives a crash of the consumer (the job is handed back, marked, and aborted when it
runs again) and lapses once the job is done or dead. Both scripts declare ``T running`` and
build ``T ab`` and the marker key from the queue's tag (``ARGV[1]``), like the scripts of
``scripts``; ``tests/test_redis_layout.py`` watches them under MONITOR with the others.

They are redis-py ``Script`` objects (loaded again by themselves after a ``SCRIPT FLUSH``), not
``calls.Scripts``: an abort is an operator's act and ABORTED runs at most twice a second per
worker process, so the few microseconds ``EVALSHA`` heads save do not matter here.

Aborting a job that waits is cancelling it (``RedisQueue.cancel``); ``abort_outcome`` says,
from what ``cancel`` answered, whether to look for it running instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from services.backends.redis import keys
from services.backends.redis.connection import guarded
from services.backends.redis.routing import by_queue
from services.protocol import Cancellation, Delivery, JobStatus

ABORT = r"""
-- KEYS: T running. ARGV: tag, id key, marker location -> 1 (requested) | 0 (not running here)
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', ARGV[1] .. 'ab', ARGV[2], ARGV[3])
return 1
"""

ABORTED = r"""
-- KEYS: T running. ARGV: tag, id key... -> one flag per id key (1: asked to abort)
local T = ARGV[1]
local ak = T .. 'ab'
local all = redis.call('HGETALL', ak)
if #all == 0 then return {} end
local pending = {}
for i = 1, #all, 2 do
  local key, at = all[i], all[i + 1]
  if redis.call('HEXISTS', KEYS[1], key) == 1
      or redis.call('HEXISTS', T .. 'w:' .. string.sub(at, 1, 3), string.sub(at, 4)) == 1 then
    pending[key] = true
  else
    redis.call('HDEL', ak, key)
  end
end
local flags = {}
for i = 2, #ARGV do flags[i - 1] = pending[ARGV[i]] and 1 or 0 end
return flags
"""

SOURCES = {"ABORT": ABORT, "ABORTED": ABORTED}
"""The scripts of this module by name (the layout test tells their calls apart by SHA-1)."""

ATTEMPTS = 3
"""Rounds of cancel-then-request before ``abort`` reports what it found: a job may move
between waiting and running (a retry, a redelivery) while it is being aborted."""


def request_args(queue: str, job_id: str) -> tuple[list[str], list[Any]]:
    """ABORT's keys and arguments for ``job_id`` in ``queue``."""
    bucket, field = keys.fingerprint(job_id)
    args = [keys.tag(queue), keys.id_key(job_id), bucket.encode() + field]
    return [keys.of(queue).running], args


def abort_outcome(found: Cancellation) -> Cancellation | None:
    """What ``abort`` answers after ``cancel`` said ``found``; None: it may be running, look."""
    if found.cancelled or found.status is None or found.status.status != "running":
        return found
    return None


def requested(found: Cancellation) -> Cancellation:
    """The answer once a request is recorded for the running job ``cancel`` found."""
    status = found.status or JobStatus(found.job_id, "running")
    return Cancellation(found.job_id, cancelled=True, status=status)


def probe_running(pipe: Any, queues: Sequence[str], job_id: str) -> None:
    """Queue a read of whether ``job_id`` runs in each of ``queues`` (``running_in``)."""
    key = keys.id_key(job_id)
    for queue in queues:
        pipe.hexists(keys.of(queue).running, key)


def running_in(queues: Sequence[str], replies: Sequence[Any]) -> str | None:
    """The first of ``queues`` where the job runs, from the replies of ``probe_running``."""
    return next((q for q, found in zip(queues, replies, strict=True) if found), None)


class AbortBook:
    """Abort requests on one blocking client: record them, and find those of running jobs."""

    def __init__(self, client: Any, where: str) -> None:
        self._client = client
        self.where = where
        self._abort = client.register_script(ABORT)
        self._aborted = client.register_script(ABORTED)

    def request(self, queues: Sequence[str], job_id: str) -> bool:
        """Record a request for ``job_id`` where it runs; False when it runs in none of
        ``queues`` (any more)."""
        with guarded("abort", self.where):
            pipe = self._client.pipeline(transaction=False)
            probe_running(pipe, queues, job_id)
            queue = running_in(queues, pipe.execute() if queues else [])
            if queue is None:
                return False
            script_keys, args = request_args(queue, job_id)
            return bool(int(self._abort(keys=script_keys, args=args)))

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Those of ``deliveries`` asked to abort: one ABORTED call per queue."""
        wanted: set[str] = set()
        with guarded("aborted", self.where):
            for queue, run in by_queue(deliveries, lambda d: d.queue).items():
                script_args = [keys.tag(queue), *(keys.id_key(d.job_id) for d in run)]
                flags = self._aborted(keys=[keys.of(queue).running], args=script_args)
                wanted.update(d.receipt for d, flag in zip(run, flags, strict=False) if flag)
        return [d for d in deliveries if d.receipt in wanted]


class AsyncAbortBook:
    """``AbortBook.request`` on an asyncio client (``conveyor serve``)."""

    def __init__(self, client: Any, where: str) -> None:
        self._client = client
        self.where = where
        self._abort = client.register_script(ABORT)

    async def request(self, queues: Sequence[str], job_id: str) -> bool:
        """As ``AbortBook.request``, without blocking the loop."""
        with guarded("abort", self.where):
            pipe = self._client.pipeline(transaction=False)
            probe_running(pipe, queues, job_id)
            queue = running_in(queues, await pipe.execute() if queues else [])
            if queue is None:
                return False
            script_keys, args = request_args(queue, job_id)
            return bool(int(await cast(Any, self._abort(keys=script_keys, args=args))))
