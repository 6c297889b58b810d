"""Taking RQ jobs: an atomic pop into the ``StartedJobRegistry``, then RQ's execution records.

``POP`` (one Lua call per queue) moves up to N job ids from ``rq:queue:<name>`` into the
queue's started registry (``rq:wip:<name>``, entries ``<job id>:<execution id>`` scored by
their expiry) in one atomic step, so a consumer killed at any point leaves each job either in
the queue or in the started registry, where recovery finds it (``leases``). Then, in one
pipeline, each job gets what RQ's own worker writes when it starts one: status ``started``,
``worker_name``, and the entry in the worker's execution index (``rq:worker:<name>:executions``,
which ``reclaim`` reads). RQ's per-execution hash and per-job execution registry are not
written: they would double the commands per job, and RQ reads its started jobs from the
started registry. A job RQ
cannot read with the chosen serializer (pickle under JSON) is failed here, unread.

Due jobs of the ``ScheduledJobRegistry`` (``enqueue_in``, retries with an interval) are moved
to their queue by whichever consumer looks first (``ZREM`` claims each), as RQ's scheduler does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from redis import Redis
from rq.executions import Execution
from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import Serializer

from services.backends.rq.mapping import started_key, unreadable
from services.backends.rq.settling import Held, Settler

POP = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
for i, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], ARGV[2], id .. ':' .. ARGV[3] .. i)
end
return ids
"""
PROMOTE_EVERY_S = 0.5
"""How often one consumer looks for due scheduled jobs (a ZRANGEBYSCORE per queue)."""


class Taker:
    """Takes RQ jobs for one consumer (``settler.worker_name``), with leases of ``lease_s``."""

    def __init__(
        self, connection: Redis, serializer: Serializer, settler: Settler, *, lease_s: float
    ) -> None:
        self._redis = connection
        self._serializer = serializer
        self._settler = settler
        self.ttl_s = max(1, int(lease_s + 0.999))
        self._pop = connection.register_script(POP)
        self._promoted_at = 0.0

    def take(self, queues: Sequence[str], max_count: int) -> list[Held]:
        """Up to ``max_count`` jobs, earlier queues first; none waits."""
        self._promote_due(queues)
        taken: list[Held] = []
        for name in queues:
            want = max_count - len(taken)
            if want <= 0:
                break
            taken += self._take_from(name, want)
        return taken

    def _take_from(self, name: str, count: int) -> list[Held]:
        queue = self._settler.queue(name)
        started = started_key(name)
        prefix = uuid.uuid4().hex[:20]
        expiry = time.time() + self.ttl_s
        ids = [
            i.decode() for i in self._pop(keys=[queue.key, started], args=[count, expiry, prefix])
        ]
        if not ids:
            return []
        jobs = RqJob.fetch_many(ids, connection=self._redis, serializer=self._serializer)
        held = []
        for index, (job_id, job) in enumerate(zip(ids, jobs, strict=True), start=1):
            execution = Execution(
                f"{prefix}{index}", job_id, self._redis, self._settler.worker_name
            )
            if job is None:  # its hash expired or was deleted while queued: nothing to run
                self._redis.zrem(started, execution.composite_key)
                continue
            execution._job = job
            held.append(Held(job, execution))
        return self._start(held)

    def _start(self, held: list[Held]) -> list[Held]:
        """RQ's start records for each job; fail those that cannot be read."""
        pipe = self._redis.pipeline(transaction=False)
        runnable = []
        for one in held:
            why = unreadable(one.job)
            if why is not None:
                self._settler.fail_in(pipe, one, why)
                continue
            one.job.prepare_for_execution(self._settler.worker_name, pipe)
            pipe.persist(one.job.key)
            pipe.sadd(one.execution.worker_executions_key, one.execution.composite_key)
            runnable.append(one)
        if runnable:
            index = runnable[0].execution.worker_executions_key
            pipe.expire(index, self.ttl_s + 60)
        pipe.execute()
        return runnable

    def _promote_due(self, queues: Sequence[str]) -> None:
        """Move due scheduled jobs of ``queues`` to their queue (each claimed by ZREM)."""
        now = time.monotonic()
        if now - self._promoted_at < PROMOTE_EVERY_S:
            return
        self._promoted_at = now
        # RQ scores scheduled jobs by whole seconds, rounded down: a score of a second ago
        # or older is certainly due (never early; up to a second late).
        stamp = int(datetime.now(UTC).timestamp()) - 1
        for name in queues:
            registry = ScheduledJobRegistry(name, connection=self._redis)  # type: ignore[no-untyped-call]
            for job_id in registry.get_jobs_to_schedule(stamp):
                if self._redis.zrem(registry.key, job_id):
                    pipe = self._redis.pipeline()
                    pipe.hset(RqJob.key_for(job_id), "status", RqStatus.QUEUED.value)
                    self._settler.queue(name).push_job_id(job_id, pipeline=pipe)
                    pipe.execute()
