"""The Redis backend: lists for queues, one Lua script per state change, leases per queue.

Why lists and Lua, not Streams or BLMOVE alone:

* **Memory.** A waiting job is one list element (18 bytes of header + the body) in a listpack,
  plus a ~12-byte waiting marker (``keys``); a stream entry costs more per entry and XACK
  alone leaves it in the stream (XDEL too).
* **Batched, atomic.** One ``FETCH`` script pops up to its cap of jobs from a queue (``LPOP key
  count``, Redis 6.2) and records them as in flight in the same atomic step; no
  BRPOP-then-write window. Several queues are FETCHed in priority order (``fetching``).
* **Blocking without polling.** A script cannot block, so an idle consumer BLPOPs the queues'
  *doorbells* (``T b``), with the FETCH pipelined behind it (``fetching``).
* **Bounded calls.** No script call handles more than ``CAPS[name]`` jobs; a bigger batch is
  several calls in one pipeline (still one round trip), so Redis, which runs nothing else while
  a script runs, never stalls other clients for long.
* **Cluster-ready.** Every key of a queue shares its hash tag ``T = cv:{<queue>}:`` and every
  script handles one queue (``keys``, ``scripts``): settling calls are grouped by queue
  (``routing``), and nothing fleet-wide is in a queue script.
* **Time** is the Redis clock (``TIME`` in scripts), so hosts' clocks do not matter.

Modules, and who calls whom::

    RedisQueue (queue.py) --state changes: Scripts (calls.py), EVALSHA--> scripts.py
        |--get--> Fetcher (fetching.py): FETCH per queue in priority order, doorbell waits
        |--reads, revive--> Reader (reads.py) --> LLEN, ZCARD, HMGET, ... (+ REQUEUE_DEAD)
        |--Heartbeat, Hold, Tokens (lease.py): lease renewal, recovery of expired consumers
        |--ServerWatch (health.py): setup warnings, lost-data alarms, old-layout refusal
        \\--make_client, guarded (connection.py): bounded clients, errors mapped to ours
    keys.py: every key name and byte layout (elements, receipts, status records)

Data flow (key layout in ``keys``, ``T`` the queue's tag, each arrow one script)::

    put --PUT--> T q --FETCH--> T i:<consumer> --ACK-------> T j:<id> (status, TTL)
         \\--> T d --^ (due)       |  |  \\--RETRY--> T d / T q, T f:<id>
                                  |  \\--DEAD--------> T dl
                                  \\--HAND_BACK (reclaim, lease expired)--> T q front
                                       (redeliveries + 1, or T dl when past the limit)

**Registry.** The first put or get on a queue by a connection adds it to ``cv:{cv}:queues``
(``SADD``, outside any script; remembered per connection), and the heartbeat adds the queues
it serves again, which heals a registry lost with the data. ``queues``, ``status``, ``stats``
and lease recovery read it.

**Put if absent, per queue.** PUT stores a job only if its id has no waiting marker (queued
or delayed) in the queue, is not in ``T running``, and has no ``T f``/``T j`` record (waiting
for a retry, finished within the result TTL); it answers one flag per job. A caller-chosen id
is unique within its queue, not across queues (``keys``, "Finding a job from its id"). A put
whose reply was lost is sent again with the same elements until ``put_timeout_s``, which
put-if-absent makes safe; only then does it raise ``BackendUnavailableError`` saying the jobs
may or may not be stored. (An id stored by the lost attempt is then reported as present.) Ids
the caller just generated (``new_ids``) are checked against waiting markers only, in one
``HSETNX`` each; the retry after a lost reply checks everything again.

**Leases and fencing, per queue.** ``FETCH`` gives each delivery a token from ``T seq`` and
stores it in the consumer's hash ``T i:<consumer>``; the receipt is ``<token>:<consumer>`` and
the delivery names its queue. The consumer's lease in a queue (``T l``) is renewed by FETCH of
that queue and by a heartbeat thread (``lease``) in every queue the consumer serves, which
also publishes the tokens held but not started (``T p``) and recovers expired consumers in
every registered queue, counting only their started jobs as crash suspects. Recovery and
``reclaim`` delete the tokens from the hash and note them in ``T h:<consumer>``: a settlement
that misses its token is *fenced* (rejected, counted in ``T n``) if the token is there, and
otherwise a repeat of a settlement that already worked (accepted, not counted).

**Ownership before start.** ``held_until`` is when the last renewal that found this consumer's
deliveries intact in every queue it holds some in was sent, plus the lease, less a margin. A
renewal that finds tokens taken (a ``T h`` grew) or a lease gone while holding deliveries
there raises a sticky alarm and keeps ``held_until`` in the past until ``confirm`` drops the
deliveries that are no longer ours.

**Status and counts** are cheap: waiting markers say queued/scheduled, ``T running`` maps
in-flight ids to their consumer, settled jobs get a record with a TTL, and ``T n`` holds the
in-flight/done/dead counters. A job is found by probing the registered queues (``reads``).
``T j:<id>`` is a one-item list so that ``wait_finished`` can block on it with ``BLMOVE key key
LEFT LEFT``, which returns the item without removing it (every waiter sees it) and wakes when
``ACK``/``DEAD`` push it.

**ACL.** The commands this backend needs, for a user limited to its keys::

    ACL SETUSER conveyor on >secret resetkeys ~cv:* resetchannels -@all
      +ping +auth +hello +select +info +config|get +time
      +evalsha +script|load +blpop +blmove +llen +lindex +lrange +lpush +rpush +lpop +ltrim
      +zadd +zrem +zrange +zrevrange +zrangebyscore +zcard +zscore +zremrangebyscore +zrank
      +zpopmin +zremrangebyrank +hset +hsetnx +hget +hmget +hdel +hgetall +hkeys +hincrby
      +hexists +hlen +sadd +scard +sismember +smembers +incr +incrby +get +set +del +exists
      +expire +pexpire +wait

(``config|get`` is optional: without it the RDB-snapshot check is skipped; ``wait`` is needed
only with ``--durable``. On Redis 6.2, and on 7.2 and later (Valkey too), also add
``+client|setinfo``: redis-py sends it on connect and ignores a refusal, which ``ACL LOG``
would still record (7.0 and 7.1 reject the unknown subcommand before the ACL check). On a
cluster, redis-py also reads the topology: add ``+cluster|slots +cluster|shards +command``.
``tests/test_redis_acl.py`` parses this very line and runs a worker under it.)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.backends import redact_url
from services.backends.redis import keys
from services.backends.redis.aborts import ATTEMPTS, AbortBook, abort_outcome, requested
from services.backends.redis.browse import browse
from services.backends.redis.calls import ScriptCall, Scripts, ms
from services.backends.redis.connection import disconnect, guarded, make_client
from services.backends.redis.durability import Confirmer, confirmer_for
from services.backends.redis.fetching import Fetcher, Taken
from services.backends.redis.fleet import RedisFleet
from services.backends.redis.health import ServerWatch
from services.backends.redis.history import RedisHistory
from services.backends.redis.lease import Heartbeat, Hold, Renewal, Token, Tokens
from services.backends.redis.limit_usage import limit_usage
from services.backends.redis.limits import RedisLimiter
from services.backends.redis.reads import (
    BLOCK_CHUNK_S,
    Reader,
    probe_markers,
    registered,
    waiting_in,
)
from services.backends.redis.routing import by_queue, chunked
from services.backends.redis.schedule import RedisSchedule
from services.backends.redis.unique import UniqueScripts, put_unique, unique_args
from services.errors import BackendUnavailableError, ConveyorError, QueueFullError
from services.limits import Limit
from services.protocol import (
    CANCELLED,
    Backend,
    Cancellation,
    Completion,
    Connector,
    DeadLetter,
    Delivery,
    JobStatus,
    QueueCounts,
)
from services.protocol.browsing import Listed
from services.protocol.limit_usage import LimitUsage
from services.settings import QueueSettings

log = logging.getLogger("conveyor.redis")

CAPS = {"PUT": 250, "FETCH": 100, "ACK": 50, "NACK": 100, "HAND_BACK": 100, "CONFIRM": 500}
"""Most jobs one script call handles; a bigger batch is several calls in one pipeline."""


SCRIPTS = ("PUT", "FETCH", "ACK", "RETRY", "NACK", "DEAD", "HAND_BACK", "CONFIRM", "CANCEL")
"""The scripts a ``RedisQueue`` runs on its main client."""


def open_url(url: str, settings: QueueSettings) -> Backend:
    """The backend factory's entry point: a queue on ``url`` with a generated consumer id."""
    return RedisQueue(url, settings)


def new_consumer_id() -> str:
    """``hostname:pid:random``, unique per ``RedisQueue`` opened without an explicit id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def cancel_args(job_id: str, settings: QueueSettings) -> tuple[Any, ...]:
    """The CANCEL script's arguments after the tag (see ``scripts.CANCEL``)."""
    bucket, field = keys.fingerprint(job_id)
    return ms(settings.result_ttl_s), job_id, keys.id_key(job_id), bucket, field, CANCELLED


def cancellation(job_id: str, outcome: int, found: JobStatus | None) -> Cancellation:
    """What CANCEL's ``outcome`` means; ``found`` is the job's status, read when it said no."""
    if outcome == 1:
        return Cancellation(job_id, cancelled=True)
    return Cancellation(job_id, cancelled=False, status=found)


def dead_limits(settings: QueueSettings) -> tuple[int, int, int]:
    """The result TTL and the dead-letter bounds, as the settling scripts take them."""
    age = ms(settings.dead_letter_max_age_s)
    return ms(settings.result_ttl_s), settings.dead_letter_max, age


@dataclass(frozen=True, repr=False)
class RedisConnector:
    """A picklable recipe for a child to consume as ``consumer_id``."""

    url: str
    settings: QueueSettings
    consumer_id: str

    @property
    def durable(self) -> bool:
        """Jobs live in Redis, not in the process that made this connector."""
        return True

    def open(self) -> Backend:
        """Connect in the child."""
        return RedisQueue(self.url, self.settings, consumer_id=self.consumer_id)

    def __repr__(self) -> str:
        return f"RedisConnector({redact_url(self.url)!r}, consumer_id={self.consumer_id!r})"


class RedisQueue:
    """A ``Backend`` on one Redis database; see the module docstring for the design.

    State changes are here; reads (and ``revive``) are its ``Reader``'s, taking jobs its
    ``Fetcher``'s, on the same clients.
    """

    def __init__(
        self, url: str, settings: QueueSettings, *, consumer_id: str | None = None
    ) -> None:
        self.consumer_id = consumer_id or new_consumer_id()
        self.url = url
        self.settings = settings
        self.where = redact_url(url)
        op_s = settings.op_timeout_s
        # Separate connections: blocking waits never delay a put or an ack, and the heartbeat
        # never waits behind either.
        self._client = make_client(url, timeout_s=op_s)
        self._blocking = make_client(url, timeout_s=BLOCK_CHUNK_S + op_s)
        self._reads = Reader(self._client, self._blocking, self.where)
        self._beat_client = make_client(url, timeout_s=op_s)
        self._scripts = Scripts(self._client, SCRIPTS, self.where)
        self._unique = UniqueScripts(self._client, self.where)
        self._confirmer = confirmer_for(Confirmer, self._client, settings, self.where)
        """Puts and acks wait for replicas (``durability``) when ``durable_replicas`` is set."""
        self._beat_scripts = Scripts(self._beat_client, ("HEARTBEAT", "HAND_BACK"), self.where)
        self._heartbeat = Heartbeat(
            self._renew,
            self._recover,
            interval_s=min(settings.lease_s / 3, BLOCK_CHUNK_S),
            grace_s=settings.lease_s,
            restored=self._after_outage,
        )
        self._hold = Hold(settings.lease_s)
        self._watch = ServerWatch()
        self._tokens = Tokens()
        """Tokens of deliveries ``get`` returned and this process has not settled yet, and of
        those that ``started`` says are running (the others are prefetched)."""
        self._fetcher = Fetcher(
            self._scripts,
            self._blocking,
            self.consumer_id,
            settings,
            note=self._note_renewal,
            holding=self._holding,
        )
        self._known: set[str] = set()
        """Queues this connection registered and took the epoch of (``_first_use``)."""
        self._served: frozenset[str] = frozenset()
        """Queues given to ``get`` (replaced, never changed in place: the heartbeat reads it)."""
        self._registered: list[str] | None = None
        """The registry as the last heartbeat read it (the queues recovery visits)."""
        self._unsure = False
        """A FETCH failed on the way back, or Redis was away (perhaps failed over): our
        in-flight hashes may hold jobs this process does not (see ``_hand_back_unseen``)."""
        self._fleet: RedisFleet | None = None
        self._schedules: RedisSchedule | None = None
        self._history: RedisHistory | None = None
        self._limits = RedisLimiter(self._client, self._beat_client, settings.lease_s, self.where)
        """Concurrency permits and rates (``limits``): admit, renew with the beat, release."""
        self._aborts = AbortBook(self._client, self.where)

    def __repr__(self) -> str:
        return f"RedisQueue({self.where!r}, consumer_id={self.consumer_id!r})"

    def check_server(self) -> list[str]:
        """Warnings about the server (eviction policy, persistence), then this connection's
        alarms (e.g. Redis restarted empty); the warnings are logged here, and only here.

        Raises:
            ConfigError: Redis holds data of the layout before 0.2 (``keys``).
        """
        with guarded("check_server", self.where):
            return self._watch.check(self._client, self.where, self._known)

    def alarms(self) -> list[str]:
        """Sticky alarms this connection raised (lost data, lost lease), oldest first."""
        return list(self._watch.alarms)

    def _first_use(self, queues: Iterable[str]) -> None:
        """Before this connection's first put or get on a queue: refuse an old layout (once),
        register the queues, take their epochs."""
        fresh = sorted(set(queues) - self._known)
        if fresh:
            with guarded("check_server", self.where):
                self._watch.baseline(self._client, fresh, self.where)
                self._client.sadd(keys.REGISTRY_KEY, *fresh)
            self._known.update(fresh)

    # -- reads (and revive), by the reader ---------------------------------------------------

    def depth(self, queue: str) -> int:
        return self._reads.depth(queue)

    def counts(self, queue: str) -> QueueCounts:
        return self._reads.counts(queue)

    def oldest_waiting_age(self, queue: str) -> float | None:
        return self._reads.oldest_waiting_age(queue)

    def done_rate(self, queue: str, window_s: float = 60.0) -> float | None:
        return self._reads.done_rate(queue, window_s)

    def browse(self, queue: str, state: str, *, offset: int = 0, limit: int = 50) -> list[Listed]:
        """A page of ``queue``'s waiting or delayed jobs (``QueueBrowser``, ``browse.py``)."""
        return browse(self._client, self.where, queue, state, offset=offset, limit=limit)

    def limit_usage(self, limits: Sequence[Limit]) -> list[LimitUsage]:
        """Permits held and jobs parked per limit now (``LimitInspector``, ``limit_usage.py``)."""
        return limit_usage(self._client, self.where, limits)

    def stats(self) -> dict[str, int]:
        """Backend counters: ``fenced`` (late settlements rejected), ``recovered``, ..."""
        return self._reads.stats()

    def status(self, job_id: str) -> JobStatus | None:
        return self._reads.status(job_id)

    def wait_finished(self, job_id: str, timeout_s: float) -> JobStatus | None:
        return self._reads.wait_finished(job_id, timeout_s)

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        return self._reads.dead_letters(queue, limit=limit)

    def revive(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._reads.revive(queue, job_ids)

    def delete_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return self._reads.delete_dead(queue, job_ids)

    def queues(self) -> list[str]:
        return self._reads.queues()

    def cancel(self, job_id: str) -> Cancellation:
        """End ``job_id`` as dead ("cancelled") if it waits: the first registered queue whose
        marker has it runs CANCEL (which checks the marker again, atomically); else say why."""
        queues = self.queues()
        with guarded("cancel", self.where):
            pipe = self._client.pipeline(transaction=False)
            probe_markers(pipe, queues, job_id)
            queue = waiting_in(queues, pipe.execute() if queues else [])
        outcome = 0
        if queue is not None:
            args = cancel_args(job_id, self.settings)
            outcome = int(self._scripts.run("CANCEL", "cancel", queue, *args))
        return cancellation(job_id, outcome, None if outcome == 1 else self.status(job_id))

    def abort(self, job_id: str) -> Cancellation:
        """Cancel ``job_id`` if it waits; if it runs, record an abort request (``aborts``)."""
        for _ in range(ATTEMPTS):  # it may move between waiting and running meanwhile
            found = self.cancel(job_id)
            answer = abort_outcome(found)
            if answer is not None:
                return answer
            if self._aborts.request(self.queues(), job_id):
                return requested(found)
        return found

    def aborted(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Those of ``deliveries`` asked to abort (``aborts``: one ABORTED call per queue)."""
        return self._aborts.aborted(deliveries) if deliveries else []

    # -- producing ---------------------------------------------------------------------------

    def put(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> bool:
        """Store one job unless its id is present, in one round trip (see ``JobPutter.put``)."""
        element = keys.pack_element(job_id, body)
        return self._put(queue, [(element,)], delay_s=delay_s, new_ids=new_ids)[0]

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store the ``items`` whose ids are absent from ``queue``; one flag per item (False:
        was present).

        A bounded queue takes all or nothing, in one call; an unbounded one in capped calls,
        pipelined. Lost replies and a full queue are retried until ``put_timeout_s``. With
        ``new_ids`` PUT checks waiting markers only (see ``scripts.PUT``); a retry after
        a lost reply checks everything, since the lost attempt may have stored the jobs and a
        worker may have taken or finished them since.
        """
        if not items:
            return []
        elements = [keys.pack_element(job_id, body) for job_id, body in items]
        max_depth = self.settings.max_depth or 0
        if max_depth and len(elements) > max_depth and delay_s <= 0:
            raise QueueFullError(f"{len(elements)} jobs can never fit {queue!r} ({max_depth})")
        size = len(elements) if max_depth else CAPS["PUT"]
        return self._put(queue, chunked(elements, size), delay_s=delay_s, new_ids=new_ids)

    def _put(
        self, queue: str, chunks: Sequence[Sequence[bytes]], *, delay_s: float, new_ids: bool
    ) -> list[bool]:
        """PUT each chunk of elements (``put_many``'s rules), retrying until ``put_timeout_s``."""
        max_depth = self.settings.max_depth or 0
        # As the bytes redis-py would send for these ints and flags: packed as they are.
        head = (b"%d" % max_depth, b"%d" % ms(delay_s))
        fresh = b"1" if new_ids else b"0"
        deadline = time.monotonic() + self.settings.put_timeout_s
        pause = 0.005
        while True:
            try:
                if queue not in self._known:
                    self._first_use((queue,))
                replies = self._put_calls(queue, [(*head, fresh, *chunk) for chunk in chunks])
            except BackendUnavailableError as exc:
                if time.monotonic() >= deadline:
                    raise BackendUnavailableError(
                        f"{exc} (retried for {self.settings.put_timeout_s}s): the put was not "
                        "confirmed, the jobs may or may not be stored; putting the same ids "
                        "again is safe, nothing is stored twice"
                    ) from exc
                # The lost attempt may have stored the jobs, and a worker finished them since.
                fresh = b"0"
            else:
                if all(not isinstance(reply, int) for reply in replies):
                    return [flag == ord("1") for reply in replies for flag in reply]
                if time.monotonic() >= deadline:
                    raise QueueFullError(
                        f"queue {queue!r} stayed at its limit of {max_depth} for "
                        f"{self.settings.put_timeout_s}s; nothing was enqueued"
                    )
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)

    def _put_calls(self, queue: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """PUT calls on ``queue``: one alone on a kept connection (``Scripts.run_kept``: this
        loop repeats a call whose reply was lost), else as every durable write (``_write``)."""
        if len(calls) == 1 and self._confirmer is None:
            return [self._scripts.run_kept("PUT", "put", queue, *calls[0])]
        return self._write("put", [("PUT", queue, args) for args in calls])

    def put_unique(
        self,
        queue: str,
        job_id: str,
        body: bytes,
        *,
        key: str,
        ttl_s: float | None,
        delay_s: float = 0.0,
    ) -> str:
        """Store one job holding ``key`` unless a live job holds it (``unique``); the holder."""
        max_depth = self.settings.max_depth or 0
        args = unique_args((job_id, body), key=key, ttl_s=ttl_s, delay_s=delay_s,
                           max_depth=max_depth)  # fmt: skip

        def write(calls: Sequence[ScriptCall]) -> list[Any]:
            if queue not in self._known:
                self._first_use((queue,))
            if self._confirmer is not None:
                return self._unique.run_confirmed(self._confirmer, "put", calls)
            return self._unique.run_all("put", calls)

        return put_unique(write, queue, args, self.settings)

    # -- consuming ---------------------------------------------------------------------------

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        """Take up to ``max_count`` jobs, the queues in priority order (``fetching``); one
        round trip for a single queue; block on the doorbells if none."""
        if not queues or max_count < 1:
            return []
        if not self._known.issuperset(queues):
            self._first_use(queues)
        if not self._served.issuperset(queues):
            self._served = self._served.union(queues)
        self._heartbeat.start(f"conveyor-heartbeat-{self.consumer_id}")
        if self._unsure:
            self._hand_back_unseen()
        try:
            taken = self._fetcher.take(queues, max_count, timeout_s)
            self._unsure = self._unsure or self._fetcher.skipped
            return self._deliveries(taken)
        except ConveyorError:
            self._unsure = True
            raise

    def _after_outage(self) -> None:
        """The heartbeat is back after failing (heartbeat thread): a failover may have lost the
        effects of an ack whose reply we had, leaving the job in our in-flight hash while we
        hold it no more; the next ``get`` compares and hands such jobs back."""
        self._unsure = True

    def _hand_back_unseen(self) -> None:
        """Hand back jobs our in-flight hashes hold that this process does not: left by a lost
        FETCH reply, or by an ack a failover lost (the promoted replica never saw it).

        The heartbeat keeps our leases alive, so lease recovery would never free them: compare
        each served queue's hash with the deliveries this process really holds, return the rest.
        """
        served = sorted(self._served)
        with guarded("get", self.where):
            pipe = self._client.pipeline(transaction=False)
            for queue in served:
                pipe.hkeys(keys.inflight_key(queue, self.consumer_id))
            found = pipe.execute()
        held = self._tokens.held()
        unseen = {
            queue: [(self.consumer_id, token) for token in sorted(_texts(tokens))
                    if (queue, token) not in held]
            for queue, tokens in zip(served, found, strict=True)
        }  # fmt: skip
        count = sum(len(parts) for parts in unseen.values())
        if count:
            self._settle("NACK", "get", unseen)
            log.warning(
                "handed back %d job(s) held in Redis but not by this process (a lost fetch "
                "reply, or an ack lost in a failover)",
                count,
            )
        self._unsure = False

    def _deliveries(self, taken: Sequence[Taken]) -> list[Delivery]:
        out = []
        for queue, token, raw in taken:
            element = keys.unpack_element(raw)
            out.append(
                Delivery(
                    job_id=element.job_id,
                    queue=queue,
                    body=element.body,
                    receipt=keys.make_receipt(token, self.consumer_id),
                    redeliveries=element.redeliveries,
                )
            )
        self._tokens.add([(queue, str(token)) for queue, token, _ in taken])
        return out

    def _settled(self, deliveries: Iterable[Delivery]) -> None:
        tokens = [self._token(d) for d in deliveries]
        self._tokens.settle(tokens)
        self._limits.release(tokens)

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        """Take the permits and starts ``limits`` need, or park the job (``limits``)."""
        if self._limits.admit(delivery, limits):
            return True
        self._tokens.settle([self._token(delivery)])  # parked: no longer ours
        return False

    def _settle(
        self,
        name: str,
        what: str,
        parts: Mapping[str, Sequence[Sequence[Any]]],
        *,
        durable: bool = False,
    ) -> list[Any]:
        """Capped calls of a settling script per queue, pipelined: its limits, then the
        flattened ``parts`` of that queue."""
        limits = dead_limits(self.settings)
        calls: list[ScriptCall] = [
            (name, queue, (*limits, *(x for part in chunk for x in part)))
            for queue, run in parts.items()
            for chunk in chunked(run, CAPS[name])
        ]
        return self._write(what, calls, durable=durable)

    def _write(self, what: str, calls: Sequence[ScriptCall], *, durable: bool = True) -> list[Any]:
        """Script calls that store or settle jobs; confirmed by replicas when ``durable`` and
        the settings ask for it (puts and acks: what a failover must not lose)."""
        if durable and self._confirmer is not None:
            return self._scripts.run_confirmed(self._confirmer, what, calls)
        if len(calls) == 1:
            name, queue, args = calls[0]
            return [self._scripts.run(name, what, queue, *args)]
        return self._scripts.run_all(what, calls)

    def ack(self, completions: Sequence[Completion]) -> int:
        """Settle finished jobs in one round trip; returns how many were fenced."""
        if not completions:
            return 0
        parts: dict[str, list[Sequence[Any]]] = {}
        for completion in completions:
            delivery = completion.delivery
            consumer, token = keys.parse_receipt(delivery.receipt)
            part = (consumer, token, delivery.job_id, keys.result_arg(completion.result))
            parts.setdefault(delivery.queue, []).append(part)
        replies = self._settle("ACK", "ack", parts, durable=True)
        self._settled(c.delivery for c in completions)
        return sum(int(reply) for reply in replies)

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        """Hand jobs back to the front of their queues (in their order), not as failures."""
        if deliveries:
            groups = by_queue(reversed(deliveries), lambda d: d.queue)
            parts = {q: [keys.parse_receipt(d.receipt) for d in run] for q, run in groups.items()}
            self._settle("NACK", "hand_back", parts)
            self._settled(deliveries)

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        """Replace the in-flight job by ``body``, visible after ``delay_s``; False if fenced."""
        element = keys.pack_element(delivery.job_id, body, delivery.redeliveries)
        consumer, token = keys.parse_receipt(delivery.receipt)
        reason = keys.bound_reason(error).encode()
        args = (consumer, token, delivery.job_id, ms(delay_s), element, reason)
        limits = dead_limits(self.settings)
        accepted = bool(self._scripts.run("RETRY", "retry", delivery.queue, *limits, *args))
        self._settled([delivery])
        return accepted

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the in-flight job to the dead letters of its queue; False if fenced."""
        consumer, token = keys.parse_receipt(delivery.receipt)
        args = (*dead_limits(self.settings), consumer, token, delivery.job_id)
        reason_arg = keys.bound_reason(reason).encode()
        accepted = bool(self._scripts.run("DEAD", "dead_letter", delivery.queue, *args, reason_arg))
        self._settled([delivery])
        return accepted

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back ``consumer_id``'s in-flight jobs now (it died of ``reason``), in every
        registered queue and every queue this connection used.

        Only ``suspects`` (None: all) count as crash redeliveries; the rest go back as they
        were.
        """
        marks = [b"0"] if suspects is None else [b"1", *map(keys.id_key, suspects)]
        queues = {*self.queues(), *self._known, *self._served}
        return self._hand_back_in(self._scripts, "reclaim", queues, (consumer_id, reason, marks))

    def _hand_back_in(
        self,
        scripts: Scripts,
        what: str,
        queues: Iterable[str],
        whose: tuple[str, str, list[bytes]],
    ) -> int:
        """HAND_BACK calls (one per queue, pipelined) until nothing is left (each call capped);
        ``whose``: consumer ('' for any expired one), reason, marks."""
        consumer_id, reason, marks = whose
        settings = self.settings
        args: tuple[Any, ...] = (*dead_limits(settings), settings.max_redeliveries, consumer_id)
        args = (*args, reason, CAPS["HAND_BACK"], *marks)
        todo, total = sorted(queues), 0
        for _ in range(1_000_000):  # bounded: each call hands back jobs or ends its queue
            if not todo:
                break
            replies = scripts.run_all(what, [("HAND_BACK", queue, args) for queue in todo])
            total += sum(int(done) for done, _ in replies)
            todo = [q for q, (_, left) in zip(todo, replies, strict=True) if int(left)]
        return total

    # -- ownership ---------------------------------------------------------------------------

    def held_until(self) -> float:
        """``time.monotonic()`` until which every delivery held is certainly still ours."""
        return self._hold.until()

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the leases and keep those of ``deliveries`` still ours (one round trip)."""
        tokens = by_queue(sorted(self._tokens.held() | {self._token(d) for d in deliveries}),
                          lambda token: token[0])  # fmt: skip
        lease = ms(self.settings.lease_s)
        calls: list[ScriptCall] = [
            ("CONFIRM", queue, (self.consumer_id, lease, *(token for _, token in run)))
            for queue, run in tokens.items()
        ]
        sent_at = time.monotonic()
        replies = self._scripts.run_all("confirm", calls) if calls else []
        gone: set[Token] = set()
        renewals: list[Renewal] = []
        for (queue, run), (existed, handed, flags) in zip(tokens.items(), replies, strict=True):
            gone.update(token for token, flag in zip(run, flags, strict=True) if not flag)
            renewals.append((queue, int(existed), int(handed)))
        self._tokens.settle(gone)
        self._limits.release(gone)  # their permits too: the heartbeat would renew them forever
        self._hold.confirmed(sent_at=sent_at, replies=renewals)
        return [d for d in deliveries if self._token(d) not in gone]

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Note which deliveries run (the heartbeat publishes the others as prefetched)."""
        self._tokens.start([self._token(d) for d in deliveries], running=running)

    def _token(self, delivery: Delivery) -> Token:
        return delivery.queue, keys.parse_receipt(delivery.receipt)[1]

    def _holding(self) -> set[str]:
        """The queues this process holds deliveries of."""
        return {queue for queue, _ in self._tokens.held()}

    def _note_renewal(self, sent_at: float, holding: set[str], replies: list[Renewal]) -> None:
        if self._hold.renewed(sent_at=sent_at, replies=replies, holding=holding):
            self._watch.alarm(
                f"consumer {self.consumer_id} lost its hold at {self.where}: its in-flight "
                "jobs were handed to others (paused past its lease, or Redis lost them); "
                "prefetched jobs are confirmed before they start"
            )

    # -- leases ------------------------------------------------------------------------------

    def _renew(self) -> None:
        """One beat: HEARTBEAT per served queue, the registry healed and read, one pipeline."""
        holding, prefetched = self._tokens.snapshot()
        served = sorted(self._served)
        lease = ms(self.settings.lease_s)
        published = by_queue(prefetched, lambda token: token[0])
        calls: list[ScriptCall] = [
            ("HEARTBEAT", q, (self.consumer_id, lease, *(t for _, t in published.get(q, []))))
            for q in served
        ]
        raw = [("SADD", keys.REGISTRY_KEY, *served), ("SMEMBERS", keys.REGISTRY_KEY)]
        sent_at = time.monotonic()
        replies = self._beat_scripts.run_all("heartbeat", calls, raw if served else raw[1:])
        self._registered = registered(replies[-1])
        beats = replies[: len(served)]
        still = {queue for queue, _ in holding & self._tokens.held()}
        renewals = [
            (q, int(existed), int(handed))
            for q, (existed, handed, _) in zip(served, beats, strict=True)
        ]
        self._note_renewal(sent_at, still, renewals)
        for queue, (_, _, epoch) in zip(served, beats, strict=True):
            self._watch.observe(keys.of(queue).epoch, epoch, self.where)
        self._limits.renew()  # permits are held with the lease

    def _recover(self) -> int:
        """Recover expired consumers' jobs in every registered queue (as the beat read them)."""
        if self._registered is None:
            with guarded("recover", self.where):
                self._registered = registered(self._beat_client.smembers(keys.REGISTRY_KEY))
        queues = {*self._registered, *self._served}
        return self._hand_back_in(
            self._beat_scripts, "recover", queues, ("", "lease expired", [b"p"])
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def connector(self, consumer_id: str) -> Connector:
        """A picklable recipe for a child consuming as ``consumer_id``."""
        return RedisConnector(self.url, self.settings, consumer_id)

    def fleet(self) -> RedisFleet:
        """The fleet state (``fleet.py``) on this queue's main client: no connection of its own."""
        if self._fleet is None:
            self._fleet = RedisFleet(self._client, self.where)
        return self._fleet

    def history_store(self) -> RedisHistory:
        """The queues' history (``history.py``, a ``HistoryStore``) on the main client."""
        if self._history is None:
            self._history = RedisHistory(self._client, self.where)
        return self._history

    # -- the schedulers' store (``schedule``), on the main client ----------------------------

    def _schedule(self) -> RedisSchedule:
        if self._schedules is None:
            self._schedules = RedisSchedule(self._client, self.where)
        return self._schedules

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        return self._schedule().lead(scheduler_id, ttl_s, group=group)

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        self._schedule().resign(scheduler_id, group=group)

    def leader(self, *, group: str = "") -> str | None:
        return self._schedule().leader(group=group)

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        return self._schedule().last_fired(names)

    def mark_fired(self, name: str, due: float) -> None:
        self._schedule().mark_fired(name, due)

    def close(self) -> None:
        """Stop the heartbeat and drop the connections; in-flight jobs stay leased."""
        self._heartbeat.stop()
        for client in (self._client, self._blocking, self._beat_client):
            disconnect(client)


def _texts(values: Iterable[bytes | str]) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]
