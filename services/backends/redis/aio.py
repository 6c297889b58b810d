"""The Redis backend for an asyncio event loop (``redis.asyncio``): what ``conveyor serve`` uses.

Same keys (``keys``: one hash tag per queue, the registry ``cv:{cv}:queues``), same Lua
(``scripts``: PUT, CANCEL, REQUEUE_DEAD, with the ``EVALSHA`` heads of ``calls``), same reads
(``reads``: the pipelines are queued and their replies read by the very functions the
blocking ``Reader`` uses, a job found by probing the registered queues), same error mapping
(``connection.guarded``), same server checks (``health``: the old layout refused, epochs);
only the client is asyncio's, so no call blocks the loop::

    AsyncRedisQueue --put_many--> PutCoalescer (batching) --one pipeline per loop turn--> PUT
        |--status, counts_many, queues, dead_letters--> pipelines of reads.add_* / *_from
        |--cancel--> markers probed, CANCEL; revive--> REQUEUE_DEAD; delete_dead--> ZREM
        |--abort--> cancel, else ABORT where it runs (``aborts``)
        \\--check_server--> INFO, CONFIG GET save, the epochs (ServerWatch.report)

It implements the asyncio roles of ``services.protocol.aio``. Puts behave as ``RedisQueue``'s:
put-if-absent, a lost reply retried with full checks until ``put_timeout_s``, a full bounded
queue waited on until then. Puts of concurrent callers on an unbounded queue are merged into
one PUT call (an id repeated across them is stored once, for the first caller); on a bounded
queue each caller's put stays one all-or-nothing call, pipelined with the others. The first put
on a queue registers it (``SADD``, once per queue and connection).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis
import redis.asyncio

from services.backends import redact_url
from services.backends.redis import health, keys, reads
from services.backends.redis.aborts import ATTEMPTS, AsyncAbortBook, abort_outcome, requested
from services.backends.redis.batching import PutCoalescer, PutRequest, Segment, lay_out
from services.backends.redis.calls import ScriptCall, ScriptHeads, ms
from services.backends.redis.connection import disconnect_async, guarded, make_async_client
from services.backends.redis.durability import AsyncConfirmer, confirmer_for
from services.backends.redis.health import ServerWatch
from services.backends.redis.queue import CAPS, cancel_args, cancellation
from services.backends.redis.routing import by_queue
from services.backends.redis.unique import Attempts, UniqueHeads, unique_args
from services.errors import BackendUnavailableError, QueueFullError
from services.protocol import (
    AsyncBackend,
    Cancellation,
    DeadLetter,
    JobStatus,
    QueueCounts,
)
from services.settings import QueueSettings


def open_async_url(url: str, settings: QueueSettings) -> AsyncBackend:
    """The factory's entry point (``open_async_queue``): a queue on ``url``; connects lazily."""
    return AsyncRedisQueue(url, settings)


class AsyncScripts(ScriptHeads):
    """``ScriptHeads`` on an asyncio client: calls one at a time or pipelined."""

    async def run(self, name: str, what: str, queue: str, *args: Any) -> Any:
        head = self.head(name, queue)
        with guarded(what, self.where):
            try:
                return await cast(Any, self._client.evalsha(*head, *args))
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                return await self.loader(name, queue, args)

    async def run_all(self, what: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Several calls, pipelined (``calls.Scripts.run_all`` for the loop)."""
        if len(calls) == 1:
            name, queue, args = calls[0]
            return [await self.run(name, what, queue, *args)]
        with guarded(what, self.where):
            pipe = self._client.pipeline(transaction=False)
            for name, queue, args in calls:
                self.add(pipe, name, queue, args)
            replies = await pipe.execute(raise_on_error=False)
        out = list(replies)
        for index in self.unloaded(what, calls, out):  # only these did not run
            name, queue, args = calls[index]
            out[index] = await self.run(name, what, queue, *args)
        return out

    async def run_confirmed(
        self, confirmer: AsyncConfirmer, what: str, calls: Sequence[ScriptCall]
    ) -> list[Any]:
        """``calls.Scripts.run_confirmed`` for the loop: per queue, its calls then ``WAIT``."""
        out: list[Any] = [None] * len(calls)
        for queue, indexes in by_queue(range(len(calls)), lambda i: calls[i][1]).items():
            group = [calls[i] for i in indexes]
            fence = keys.of(queue).seq
            add = functools.partial(self.add_all, calls=group)
            replies = await confirmer.run_async(fence, add, what)
            missing = self.unloaded(what, group, replies)
            if missing:  # Redis restarted, or SCRIPT FLUSH: load on that node, send those again
                again = [group[i] for i in missing]
                for name in {name for name, _, _ in again}:
                    await confirmer.load_async(fence, self.source(name))
                add = functools.partial(self.add_all, calls=again)
                resent = await confirmer.run_async(fence, add, what)
                if self.unloaded(what, again, resent):  # raises any other error
                    raise BackendUnavailableError(f"{what}: Redis lost the scripts again")
                for index, reply in zip(missing, resent, strict=True):
                    replies[index] = reply
            for index, reply in zip(indexes, replies, strict=True):
                out[index] = reply
        return out


class AsyncUniqueScripts(UniqueHeads, AsyncScripts):
    """``AsyncScripts`` that run UNIQUE (its Lua is in ``unique``)."""


class AsyncRedisQueue:
    """The asyncio roles on one Redis database; see the module docstring."""

    def __init__(self, url: str, settings: QueueSettings) -> None:
        self.url = url
        self.settings = settings
        self.where = redact_url(url)
        self._client = make_async_client(url, timeout_s=settings.op_timeout_s)
        self._scripts = AsyncScripts(self._client, ("PUT", "CANCEL", "REQUEUE_DEAD"), self.where)
        self._confirmer = confirmer_for(AsyncConfirmer, self._client, settings, self.where)
        """Puts wait for replicas (``durability``) when ``durable_replicas`` is set."""
        self._watch = ServerWatch()
        self._coalescer = PutCoalescer(self._send_puts)
        self._unique = AsyncUniqueScripts(self._client, self.where)
        self._known: set[str] = set()
        """Queues this connection registered (``_first_use``)."""
        self._aborts = AsyncAbortBook(self._client, self.where)

    def __repr__(self) -> str:
        return f"AsyncRedisQueue({self.where!r})"

    async def _first_use(self, queues: Iterable[str]) -> None:
        """Before the first put on a queue: refuse an old layout (once), register it."""
        fresh = sorted(set(queues) - self._known)
        if not fresh:
            return
        with guarded("put", self.where):
            await self._check_layout()
            await self._client.sadd(keys.REGISTRY_KEY, *fresh)
        self._known.update(fresh)

    async def _check_layout(self) -> None:
        if not self._watch.layout_checked:
            pipe = self._client.pipeline(transaction=False)
            for name in keys.OLD_LAYOUT_KEYS:
                pipe.exists(name)
            health.refuse_old_layout(await pipe.execute(), self.where)
            self._watch.layout_checked = True

    # -- putting -----------------------------------------------------------------------------

    async def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store the ``items`` whose ids are absent, with the puts of this loop turn."""
        if not items:
            return []
        max_depth = self.settings.max_depth
        if max_depth and len(items) > max_depth and delay_s <= 0:
            raise QueueFullError(f"{len(items)} jobs can never fit {queue!r} ({max_depth})")
        elements = [keys.pack_element(job_id, body) for job_id, body in items]
        return await self._coalescer.put(PutRequest(queue, elements, ms(delay_s), new_ids))

    async def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        """``RedisQueue.put_unique`` for the loop (the UNIQUE script, ``unique``)."""
        max_depth = self.settings.max_depth or 0
        args = unique_args((job_id, body), key=key, ttl_s=ttl_s, delay_s=delay_s,
                           max_depth=max_depth)  # fmt: skip
        calls: list[ScriptCall] = [("UNIQUE", queue, args)]
        attempts = Attempts(queue, self.settings)
        while True:
            try:
                await self._first_use((queue,))
                [reply] = await (
                    self._unique.run_confirmed(self._confirmer, "put", calls)
                    if self._confirmer is not None
                    else self._unique.run_all("put", calls)
                )
            except BackendUnavailableError as exc:
                attempts.lost(exc)
            else:
                holder = attempts.answered(reply)
                if holder is not None:
                    return holder
            await asyncio.sleep(attempts.pause_s())

    async def _send_puts(self, requests: Sequence[PutRequest]) -> list[list[bool] | Exception]:
        """Store a batch: merged by queue, delay and id freshness unless the queue is bounded
        (then each request stays one all-or-nothing call); per request its flags, or the
        error of a call that holds some of its jobs."""
        max_depth = self.settings.max_depth or 0
        groups: dict[tuple[str, int, bool, int], list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            alone = index if max_depth else -1
            groups[(request.queue, request.delay_ms, request.new_ids, alone)].append(index)
        calls: list[ScriptCall] = []
        owners: list[list[Segment]] = []
        for (queue, delay_ms, new_ids, _), members in groups.items():
            head = (max_depth, delay_ms, "1" if new_ids else "0")
            flat = [e for i in members for e in requests[i].elements]
            size = len(flat) if max_depth else CAPS["PUT"]
            spans = lay_out([(i, len(requests[i].elements)) for i in members], size)
            for start, span in zip(range(0, len(flat), size), spans, strict=True):
                calls.append(("PUT", queue, (*head, *flat[start : start + size])))
                owners.append(span)
        results: list[list[bool] | Exception] = [[] for _ in requests]
        for segments, reply in zip(owners, await self._put_calls(calls), strict=True):
            for index, first, last in segments:
                done = results[index]
                if isinstance(reply, Exception):
                    results[index] = reply
                elif not isinstance(done, Exception):
                    done.extend(flag == ord("1") for flag in reply[first:last])
        return results

    async def _put_calls(self, calls: list[ScriptCall]) -> list[Any]:
        """PUT calls until each is answered: a lost reply is sent again with full checks, a
        full queue waited on, both until ``put_timeout_s`` (as ``RedisQueue.put_many``).

        Per call its reply (one flag byte per element), or the error it ended with.
        """
        deadline = time.monotonic() + self.settings.put_timeout_s
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        pause = 0.005
        while True:
            try:
                await self._first_use(queue for _, queue, _ in calls)
                sent = [calls[i] for i in todo]
                got = await (
                    self._scripts.run_confirmed(self._confirmer, "put", sent)
                    if self._confirmer is not None
                    else self._scripts.run_all("put", sent)
                )
            except BackendUnavailableError as exc:
                if time.monotonic() >= deadline:
                    for index in todo:
                        replies[index] = BackendUnavailableError(
                            f"{exc} (retried for {self.settings.put_timeout_s}s): the put was "
                            "not confirmed, the jobs may or may not be stored; putting the same "
                            "ids again is safe, nothing is stored twice"
                        )
                    return replies
                # The lost attempt may have stored the jobs, and a worker finished them since.
                calls = [("PUT", queue, (*args[:2], "0", *args[3:])) for _, queue, args in calls]
            else:
                for index, reply in zip(todo, got, strict=True):
                    replies[index] = reply
                todo = [index for index in todo if isinstance(replies[index], int)]
                if not todo:
                    return replies
                if time.monotonic() >= deadline:
                    for index in todo:
                        replies[index] = QueueFullError(
                            f"queue {calls[index][1]!r} stayed at its limit of "
                            f"{self.settings.max_depth} for {self.settings.put_timeout_s}s; "
                            "nothing was enqueued"
                        )
                    return replies
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)

    # -- reading -----------------------------------------------------------------------------

    async def status(self, job_id: str) -> JobStatus | None:
        """The status in the first registered queue that knows ``job_id`` (``reads``)."""
        queues = await self.queues()
        if not queues:
            return None
        with guarded("status", self.where):
            pipe = self._client.pipeline(transaction=False)
            reads.probe_status(pipe, queues, job_id)
            found = reads.first_found(job_id, queues, await pipe.execute())
        return None if found is None else found[1]

    async def counts_many(self, queues: Sequence[str]) -> list[QueueCounts]:
        if not queues:
            return []
        with guarded("counts", self.where):
            pipe = self._client.pipeline(transaction=False)
            for queue in queues:
                reads.add_counts(pipe, queue)
            replies = await pipe.execute()
        return [reads.counts_from(replies[i : i + 3]) for i in range(0, len(replies), 3)]

    async def queues(self) -> list[str]:
        with guarded("queues", self.where):
            names = await cast(Any, self._client.smembers(keys.REGISTRY_KEY))
        return reads.registered(names)

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        if limit < 1:
            return []
        with guarded("dead_letters", self.where):
            read = reads.newest_letters(queue, limit)
            rows = await cast(Any, self._client).execute_command(*read)
        return reads.letters_from(queue, rows)

    # -- administration ----------------------------------------------------------------------

    async def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        members = await self._dead_members("revive", queue, job_ids)
        calls: list[ScriptCall] = [("REQUEUE_DEAD", queue, c) for c in reads.capped(members)]
        if not calls:
            return 0
        return sum(int(n) for n in await self._scripts.run_all("revive", calls))

    async def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        members = await self._dead_members("delete_dead", queue, job_ids)
        if not members:
            return 0
        with guarded("delete_dead", self.where):
            pipe = self._client.pipeline(transaction=False)
            for chunk in reads.capped(members):
                pipe.zrem(keys.of(queue).dead, *chunk)
            return sum(int(n) for n in await pipe.execute())

    async def _dead_members(
        self, what: str, queue: str, job_ids: Sequence[str] | None
    ) -> list[bytes]:
        if job_ids is not None and not job_ids:
            return []
        with guarded(what, self.where):
            every = await cast(Any, self._client.zrange(keys.of(queue).dead, 0, -1))
        return reads.chosen_members(every, job_ids)

    async def cancel(self, job_id: str) -> Cancellation:
        """As ``RedisQueue.cancel``: markers probed, then CANCEL on the queue that has it."""
        queues = await self.queues()
        with guarded("cancel", self.where):
            pipe = self._client.pipeline(transaction=False)
            reads.probe_markers(pipe, queues, job_id)
            queue = reads.waiting_in(queues, await pipe.execute() if queues else [])
        outcome = 0
        if queue is not None:
            args = cancel_args(job_id, self.settings)
            outcome = int(await self._scripts.run("CANCEL", "cancel", queue, *args))
        found = None if outcome == 1 else await self.status(job_id)
        return cancellation(job_id, outcome, found)

    async def abort(self, job_id: str) -> Cancellation:
        """As ``RedisQueue.abort``: cancel it if it waits, else record an abort request."""
        for _ in range(ATTEMPTS):  # it may move between waiting and running meanwhile
            found = await self.cancel(job_id)
            answer = abort_outcome(found)
            if answer is not None:
                return answer
            if await self._aborts.request(await self.queues(), job_id):
                return requested(found)
        return found

    # -- health ------------------------------------------------------------------------------

    async def check_server(self) -> list[str]:
        """Setup warnings (logged once) and alarms; the first call takes the epochs' baseline
        (the registry's and every registered queue's, as ``ServerWatch.check``).

        Raises:
            ConfigError: Redis holds data of the layout before 0.2 (``keys``).
        """
        with guarded("check_server", self.where):
            await self._check_layout()
            warnings = await health.warnings_async(self._client, self.where)
            names = await cast(Any, self._client.smembers(keys.REGISTRY_KEY))
            watched = self._watch.watched(
                health.epoch_keys({*self._known, *reads.registered(names)})
            )
            epochs = dict(
                zip(watched, await health.claim_async(self._client, watched), strict=True)
            )
        return self._watch.report(warnings, epochs, self.where)

    def alarms(self) -> list[str]:
        return list(self._watch.alarms)

    async def aclose(self) -> None:
        """Let batches on their way finish, then drop the connections."""
        await self._coalescer.drain()
        if self._confirmer is not None:
            await self._confirmer.aclose()
        await disconnect_async(self._client)
