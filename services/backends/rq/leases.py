"""Short leases on RQ executions: renewed while a consumer lives, recovered soon after it dies.

RQ's own worker scores its started-registry entries ``job_monitoring_interval + 60`` seconds
ahead, so a SIGKILLed RQ worker leaves its job in ``StartedJobRegistry`` for minutes, until
some cleanup fails it as abandoned. A Conveyor consumer scores its entries ``lease_s`` ahead
(15 s by default) and renews them from a heartbeat thread every third of that; every live
consumer also looks, at each beat, for entries of its queues whose score has passed, claims
each (``ZREM``: one party wins) and puts the job back at the front of its queue with
``conveyor_redeliveries + 1``, or fails it into ``FailedJobRegistry`` once that passes
``max_redeliveries`` ("worker died ..."). The same beat keeps the consumer's RQ worker record
(``rq:worker:<consumer id>``, listed by ``rq info``) alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq.executions import Execution
from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.registry import StartedJobRegistry
from rq.serializers import Serializer
from rq.utils import parse_composite_key
from rq.worker import Worker

from services.backends.rq.mapping import redeliveries_of, started_key, text
from services.backends.rq.settling import Held, Settler

log = logging.getLogger("conveyor.rq")

RECOVER_BATCH = 100
"""Most expired entries one beat recovers per queue."""


def renew(connection: Redis, held: Iterable[Held], ttl_s: int) -> None:
    """Push the expiry of ``held`` executions ``ttl_s`` ahead (``ZADD XX``: a recovered or
    settled one is not brought back)."""
    pipe = connection.pipeline(transaction=False)
    expiry = time.time() + ttl_s
    for one in held:
        pipe.zadd(started_key(one.job.origin), {one.receipt: expiry}, xx=True)
    pipe.execute()


def recover(
    settler: Settler,
    serializer: Serializer,
    queues: Sequence[str],
    *,
    max_redeliveries: int,
) -> int:
    """Hand back (or fail) jobs whose execution expired in ``queues``; returns how many."""
    connection = settler.connection
    recovered = 0
    for name in queues:
        registry = StartedJobRegistry(name, connection=connection, serializer=serializer)
        entries = connection.zrangebyscore(registry.key, 0, time.time(), 0, RECOVER_BATCH)
        for entry in entries:
            recovered += _recover_one(
                settler, serializer, registry.key, text(entry), max_redeliveries
            )
    return recovered


def _recover_one(settler: Settler, serializer: Serializer, key: str, entry: str, limit: int) -> int:
    job_id, execution_id = parse_composite_key(entry)
    job = RqJob.fetch_many([job_id], connection=settler.connection, serializer=serializer)[0]
    if job is None:
        settler.connection.zrem(key, entry)  # its job expired: nothing to hand back
        return 0
    execution = Execution(execution_id, job_id, settler.connection, str(job.worker_name or ""))
    held = Held(job, execution)
    if not settler.claim([held])[0] or job.get_status(refresh=False) != RqStatus.STARTED:
        return 0
    why = f"worker died: its lease lapsed (consumer {execution.worker_name})"
    settle_lost(settler, held, why, crashed=True, limit=limit)
    log.warning("recovered RQ job %s from %s (lease lapsed)", job_id, execution.worker_name)
    return 1


def settle_lost(settler: Settler, held: Held, reason: str, *, crashed: bool, limit: int) -> None:
    """A claimed job whose consumer is gone: back to the front of its queue (a redelivery
    when ``crashed``), or failed once it has killed ``limit`` consumers."""
    deaths = redeliveries_of(held.job) + 1
    if crashed and deaths >= limit:
        settler.fail(held, f"{reason}, {deaths} times")
    else:
        settler.hand_back(held, crashed=crashed)


class Beat:
    """The heartbeat thread: ``step`` every ``interval_s`` until ``stop``."""

    def __init__(self, step: Callable[[], None], *, interval_s: float) -> None:
        self._step = step
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        """Start the thread once; later calls do nothing."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._step()
            except RedisError as exc:  # Redis away: the next beat tries again
                log.warning("RQ heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def rq_worker(
    connection: Redis, name: str, queues: Sequence[str], serializer: Serializer
) -> Worker:
    """The RQ worker record ``rq info`` lists for this consumer (registered, not run)."""
    worker = Worker(list(queues), connection=connection, name=name, serializer=serializer)
    worker.register_birth()  # type: ignore[no-untyped-call]
    worker.set_state("busy")
    return worker
