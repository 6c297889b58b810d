"""The read side of the Redis backend: depth, counts, queues, status, waiting for a job, dead
letters.

``RedisQueue`` (``queue``) holds a ``Reader`` on its clients and delegates these calls to it;
the state changes stay there. The only writes here are on dead letters: ``revive``, a script
like every other state change (in capped calls), and ``delete_dead``, one ``ZREM`` per capped
call.

A job is found from its id by probing the registered queues (``keys``, "Finding a job from its
id"): ``probe_status`` queues four reads per queue in one pipeline, ``first_found`` picks the
first queue in sorted order that knows the id. Counts and depth leave out cancelled jobs that
still sit in a list or delayed set (``xq`` and ``xd``, see ``keys``, "Cancelling");
``counts_from`` turns the raw replies into numbers, for the asyncio backend (``aio``) too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from services.backends.redis import keys
from services.backends.redis.calls import Scripts
from services.backends.redis.connection import command, guarded
from services.backends.redis.routing import node_client
from services.gauges import RING_SIZE, Sample, enqueued_at, rate_from, should_sample
from services.protocol import DeadLetter, JobStatus, QueueCounts

BLOCK_CHUNK_S = 1.0
"""Longest single blocking wait; also bounds how late a delayed job can be noticed."""
PROBE_PAUSE_S = 0.1
"""``wait_finished`` on an id no queue knows yet looks again after this long."""
RATE_KEY_TTL_S = 86_400
"""A queue's done samples (``T r``) go when no reader looked for a day."""
REQUEUE_CAP = 100
"""Most dead letters one REQUEUE_DEAD call moves (or one ``ZREM`` drops)."""
STATS = ("fenced", "recovered", "quarantined")
"""The backend counters ``stats`` sums over the queues (fields of each ``T n``)."""
FINISHED = frozenset({"done", "dead"})


class Reader:
    """Queries on one Redis database (held by ``RedisQueue``, on its clients)."""

    def __init__(self, client: Any, blocking: Any, where: str) -> None:
        # Any: a single-node, Sentinel or cluster client (``connection``), used through the
        # commands all of them share.
        self._client = client
        self._blocking = blocking
        self.where = where
        self._scripts = Scripts(client, ["REQUEUE_DEAD"], where)

    def depth(self, queue: str) -> int:
        """How many jobs wait in ``queue`` (not in flight, not delayed, not cancelled)."""
        found = keys.of(queue)
        with guarded("depth", self.where):
            pipe = self._client.pipeline(transaction=False)
            pipe.llen(found.waiting)
            pipe.hget(found.counts, "xq")
            waiting, cancelled = pipe.execute()
        return int(waiting) - int(cancelled or 0)

    def counts(self, queue: str) -> QueueCounts:
        """Waiting, delayed, in flight, done and dead for ``queue``, in one round trip."""
        with guarded("counts", self.where):
            pipe = self._client.pipeline(transaction=False)
            add_counts(pipe, queue)
            return counts_from(pipe.execute())

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Seconds since the head of ``queue`` (``LINDEX 0``: FIFO from the left) was enqueued.

        A cancelled job still at the head (a tombstone FETCH has not dropped yet) counts.
        """
        with guarded("oldest_waiting_age", self.where):
            head = command(self._client, "LINDEX", keys.of(queue).waiting, 0)
        stamp = None if head is None else enqueued_at(keys.unpack_element(head).body)
        return None if stamp is None else max(0.0, time.time() - stamp)

    def done_rate(self, queue: str, window_s: float) -> float | None:
        """Jobs done per second over ``window_s`` from the ring ``T r`` (Redis clock).

        Two callers at once may both add a sample: harmless, the ring only gets denser.
        """
        found = keys.of(queue)
        with guarded("done_rate", self.where):
            # TIME has no key: on a cluster the pipeline goes to the ring's own node.
            pipe = node_client(self._client, found.rate).pipeline(transaction=False)
            pipe.time()
            pipe.hget(found.counts, "done")
            pipe.lrange(found.rate, 0, -1)
            (seconds, micros), done_raw, raw = pipe.execute()
            now, done = seconds + micros / 1e6, int(done_raw or 0)
            samples = [_sample(item) for item in raw]
            if should_sample(samples, now):
                pipe.lpush(found.rate, f"{now}:{done}")
                pipe.ltrim(found.rate, 0, RING_SIZE - 1)
                pipe.expire(found.rate, RATE_KEY_TTL_S)
                pipe.execute()
        return rate_from(samples, now, done, window_s)

    def queues(self) -> list[str]:
        """The queues jobs were put on or served (the registry ``cv:{cv}:queues``), sorted."""
        with guarded("queues", self.where):
            return registered(self._client.smembers(keys.REGISTRY_KEY))

    def stats(self) -> dict[str, int]:
        """Backend counters summed over the queues: ``fenced`` (late settlements rejected),
        ``recovered``, ``quarantined``; a counter no queue has is left out."""
        queues = self.queues()
        with guarded("stats", self.where):
            pipe = self._client.pipeline(transaction=False)
            for queue in queues:
                pipe.hmget(keys.of(queue).counts, list(STATS))
            rows = pipe.execute() if queues else []
        totals: dict[str, int] = {}
        for row in rows:
            for name, value in zip(STATS, row, strict=True):
                if value is not None:
                    totals[name] = totals.get(name, 0) + int(value)
        return totals

    def status(self, job_id: str) -> JobStatus | None:
        """Done/dead (with result or reason), running, failed (retry pending), queued,
        scheduled (delayed), else None: from the first registered queue that knows the id."""
        found = self.find(job_id)
        return None if found is None else found[1]

    def find(self, job_id: str) -> tuple[str, JobStatus] | None:
        """The first registered queue (sorted) that knows ``job_id``, and its status there."""
        queues = self.queues()
        if not queues:
            return None
        with guarded("status", self.where):
            pipe = self._client.pipeline(transaction=False)
            probe_status(pipe, queues, job_id)
            return first_found(job_id, queues, pipe.execute())

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        """Block until ``job_id`` is done or dead, or ``timeout_s`` passes (then None).

        Once a queue knows the id, ``BLMOVE k k LEFT LEFT`` on its one-item record list wakes
        when the record is pushed and returns it without taking it away, so any number of
        waiters see it. Until then the queues are probed again every ``PROBE_PAUSE_S``.
        """
        deadline = time.monotonic() + timeout_s
        queue = None
        while queue is None:
            found = self.find(job_id)
            if found is not None:
                queue, status = found
                if status.status in FINISHED:
                    return status
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, PROBE_PAUSE_S))
        return self._block_on_record(job_id, keys.done_key(queue, job_id), deadline)

    def _block_on_record(self, job_id: str, key: str, deadline: float) -> JobStatus | None:
        while True:
            wait_s = min(deadline - time.monotonic(), BLOCK_CHUNK_S)
            with guarded("wait_finished", self.where):
                if wait_s < 0.001:
                    record = command(self._client, "LINDEX", key, 0)
                else:
                    # Fractional timeouts are fine for Redis >= 6; redis-py types them as int.
                    wait = round(wait_s, 3)
                    record = command(self._blocking, "BLMOVE", key, key, "LEFT", "LEFT", wait)
            if record is not None:
                return _status(job_id, record)
            if time.monotonic() >= deadline:
                return None

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of ``queue``, newest first."""
        if limit < 1:
            return []
        with guarded("dead_letters", self.where):
            rows = command(self._client, *newest_letters(queue, limit))
        return letters_from(queue, rows)

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back at the end of ``queue``, crash count 0.

        Malformed ones stay dead (they would only die again).
        """
        members = self._dead_members("revive", queue, job_ids)
        calls = capped(members)
        if not calls:
            return 0
        replies = self._scripts.run_many("REQUEUE_DEAD", "revive", queue, calls)
        return sum(int(reply) for reply in replies)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Drop dead letters (all, or those ids) of ``queue``; returns how many."""
        members = self._dead_members("delete_dead", queue, job_ids)
        if not members:
            return 0
        key = keys.of(queue).dead
        with guarded("delete_dead", self.where):
            pipe = self._client.pipeline(transaction=False)
            for chunk in capped(members):
                pipe.zrem(key, *chunk)
            return sum(int(n) for n in pipe.execute())

    def _dead_members(self, what: str, queue: str, job_ids: Sequence[str] | None) -> list[bytes]:
        """The members of ``queue``'s dead letters (all, or those of ``job_ids``)."""
        if job_ids is not None and not job_ids:
            return []
        with guarded(what, self.where):
            every: list[bytes] = command(self._client, "ZRANGE", keys.of(queue).dead, 0, -1)
        return chosen_members(every, job_ids)


def registered(names: Iterable[bytes | str]) -> list[str]:
    """The queue names of the registry's ``SMEMBERS`` reply, sorted."""
    return sorted(_text(name) for name in names)


def add_counts(pipe: Any, queue: str) -> None:
    """Queue the reads ``counts_from`` turns into ``queue``'s counts (sync or asyncio pipe)."""
    found = keys.of(queue)
    pipe.llen(found.waiting)
    pipe.zcard(found.delayed)
    pipe.hmget(found.counts, ["inflight", "done", "dead", "xq", "xd"])


def counts_from(replies: Sequence[Any]) -> QueueCounts:
    """The counts of one queue from the replies of the reads ``add_counts`` queued."""
    waiting, delayed, (inflight, done, dead, xq, xd) = replies
    return QueueCounts(
        waiting=int(waiting) - int(xq or 0),
        delayed=int(delayed) - int(xd or 0),
        in_flight=int(inflight or 0),
        done=int(done or 0),
        dead=int(dead or 0),
    )


def capped(members: Sequence[bytes]) -> list[Sequence[bytes]]:
    """``members`` cut into runs of at most ``REQUEUE_CAP`` (one script call or command each)."""
    return [members[i : i + REQUEUE_CAP] for i in range(0, len(members), REQUEUE_CAP)]


def chosen_members(every: Sequence[bytes], job_ids: Sequence[str] | None) -> list[bytes]:
    """The dead-letter members of ``every`` whose job id is in ``job_ids`` (None: all)."""
    if job_ids is None:
        return list(every)
    wanted = set(job_ids)
    return [m for m in every if keys.parse_dead(m)[1].job_id in wanted]


def add_status(pipe: Any, queue: str, job_id: str) -> None:
    """Queue the reads ``status_from`` turns into ``job_id``'s status in ``queue`` (sync or
    asyncio pipe)."""
    bucket, field = keys.marker_at(queue, job_id)
    pipe.lindex(keys.done_key(queue, job_id), 0)
    pipe.hexists(keys.of(queue).running, keys.id_key(job_id))
    pipe.get(keys.failed_key(queue, job_id))
    pipe.hget(bucket, field)


def probe_status(pipe: Any, queues: Sequence[str], job_id: str) -> None:
    """Queue ``add_status``'s reads for each of ``queues`` (``first_found`` reads the replies)."""
    for queue in queues:
        add_status(pipe, queue, job_id)


def first_found(
    job_id: str, queues: Sequence[str], replies: Sequence[Any]
) -> tuple[str, JobStatus] | None:
    """The first of ``queues`` whose replies (of ``probe_status``) know ``job_id``, and the
    status there."""
    for index, queue in enumerate(queues):
        status = status_from(job_id, replies[4 * index : 4 * index + 4])
        if status is not None:
            return queue, status
    return None


def probe_markers(pipe: Any, queues: Sequence[str], job_id: str) -> None:
    """Queue a read of ``job_id``'s waiting marker in each of ``queues`` (for ``cancel``)."""
    for queue in queues:
        pipe.hget(*keys.marker_at(queue, job_id))


def waiting_in(queues: Sequence[str], replies: Sequence[Any]) -> str | None:
    """The first of ``queues`` whose marker (a reply of ``probe_markers``) says waiting."""
    return next((q for q, found in zip(queues, replies, strict=True) if found), None)


def status_from(job_id: str, replies: Sequence[Any]) -> JobStatus | None:
    """Done/dead (with result or reason), running, failed (retry pending), queued,
    scheduled (delayed), else None: from the replies of the reads ``add_status`` queued."""
    done, running, failed, marker = replies
    if done is not None:
        return _status(job_id, done)
    waiting = keys.marker_state(marker)
    if failed is None:
        if running:
            return JobStatus(job_id, "running")
        return JobStatus(job_id, waiting) if waiting else None
    record = keys.parse_status(failed)
    state = "running" if running else record.state
    return JobStatus(job_id, state, record.attempts, record.error)


def newest_letters(queue: str, limit: int) -> tuple[Any, ...]:
    """The command that reads ``queue``'s ``limit`` newest dead letters (``letters_from``)."""
    return ("ZREVRANGE", keys.of(queue).dead, 0, limit - 1, "WITHSCORES")


def letters_from(queue: str, rows: Sequence[Any]) -> list[DeadLetter]:
    """Dead letters from the reply of ``newest_letters``'s command, newest first."""
    letters = []
    for member, score in zip(rows[::2], rows[1::2], strict=True):
        reason, element = keys.parse_dead(member)
        letters.append(
            DeadLetter(element.job_id, queue, element.body, reason, failed_at=float(score) / 1000)
        )
    return letters


def _sample(item: bytes) -> Sample:
    taken_at, total = item.split(b":")
    return float(taken_at), int(total)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _status(job_id: str, raw: bytes) -> JobStatus:
    record = keys.parse_status(raw)
    return JobStatus(job_id, record.state, record.attempts, record.error, record.result)
