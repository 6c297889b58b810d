"""The Redis backend: lists for queues, one Lua script per state change, leases per consumer.

Why lists and Lua, not Streams or BLMOVE alone:

* **Memory.** A waiting job is one list element (18 bytes of header + the body) in a listpack,
  plus a ~12-byte waiting marker (``keys``); a stream entry costs more per entry and XACK
  alone leaves it in the stream (XDEL too).
* **Several queues in priority order, batched.** One ``FETCH`` script pops up to its cap of
  jobs from the queues in order (``LPOP key count``, Redis 6.2) and records them as in flight in
  the same atomic step; no BRPOP-then-write window. BLMOVE can wait on one source only.
* **Blocking without polling.** A script cannot block, so an idle consumer BLPOPs the queues'
  *doorbells* (``cv:b:<queue>``, at most one item, rung by every push) with ``FETCH`` pipelined
  behind the ``BLPOP``: Redis runs it the moment the wait ends, so enqueue -> get is one round
  trip for a waiting consumer. Waits are cut into chunks of at most ``BLOCK_CHUNK_S`` (and
  until the next delayed job is due), so delayed jobs are moved in time and a dead Redis is
  noticed.
* **Bounded calls.** No script call handles more than ``CAPS[name]`` jobs; a bigger batch is
  several calls in one pipeline (still one round trip), so Redis, which runs nothing else while
  a script runs, never stalls other clients for long.
* **Time** is the Redis clock (``TIME`` in scripts), so hosts' clocks do not matter.

Modules, and who calls whom::

    RedisQueue (queue.py) --state changes: EVALSHA--> scripts.py (PUT, FETCH, ACK, RETRY, ...)
        |  \\--reads, revive--> Reader (reads.py) --> LLEN, ZCARD, HMGET, ... (+ REQUEUE_DEAD)
        |--Heartbeat, Hold, Tokens (lease.py): lease renewal, recovery of expired consumers
        |--ServerWatch (health.py): setup warnings, lost-data alarms
        \\--make_client, guarded (connection.py): bounded clients, errors mapped to ours
    keys.py: every key name and byte layout (elements, receipts, status records)

Data flow (key layout in ``keys``, each arrow one script of ``scripts``)::

    put --PUT--> cv:q:<queue> --FETCH--> cv:i:<consumer> --ACK-------> cv:j:<id> (status, TTL)
         \\--> cv:d:<queue> --^ (due)       |  |  \\--RETRY--> cv:d / cv:q, cv:f:<id>
                                           |  \\--DEAD--------> cv:dl:<queue>
                                           \\--HAND_BACK (reclaim, lease expired)--> cv:q front
                                                (redeliveries + 1, or cv:dl when past the limit)

**Put if absent.** PUT stores a job only if its id has no waiting marker (queued or delayed),
is not in ``cv:running``, and has no ``cv:f``/``cv:j`` record (waiting for a retry, finished
within the result TTL); it answers one flag per job. A put whose reply was lost is sent again
with the same elements until ``put_timeout_s``, which put-if-absent makes safe; only then does
it raise ``BackendUnavailableError`` saying the jobs may or may not be stored. (An id stored by
the lost attempt is then reported as present.) Ids the caller just generated (``new_ids``) are
checked against waiting markers only, in one ``HSETNX`` each; the retry after a lost reply
checks everything again.

**Leases and fencing.** ``FETCH`` gives each delivery a token from ``cv:seq`` and stores it in
the consumer's hash ``cv:i:<consumer>``; the receipt is ``<token>:<consumer>``. The consumer's
lease (``cv:leases``) is renewed by FETCH and by a heartbeat thread (``lease``), which
also publishes the tokens held but not started (``cv:p``) and recovers expired consumers,
counting only their started jobs as crash suspects. Recovery and ``reclaim`` delete the tokens
from the hash and note them in ``cv:h:<consumer>``: a settlement that misses its token is
*fenced* (rejected, counted in ``cv:stats``) if the token is there, and otherwise a repeat of a
settlement that already worked (accepted, not counted).

**Ownership before start.** ``held_until`` is when the last renewal that found this consumer's
deliveries intact was sent, plus the lease, less a margin. A renewal that finds tokens taken
(``cv:h`` grew) or its lease gone while holding deliveries raises a sticky alarm and keeps
``held_until`` in the past until ``confirm`` drops the deliveries that are no longer ours.

**Status and counts** are cheap: waiting markers say queued/scheduled, ``cv:running`` maps
in-flight ids to their consumer, settled jobs get a record with a TTL, and ``cv:n:<queue>``
holds the in-flight/done/dead counters. ``cv:j:<id>`` is a one-item list so that
``wait_finished`` can block on it with ``BLMOVE key key LEFT LEFT``, which returns the item
without removing it (every waiter sees it) and wakes when ``ACK``/``DEAD`` push it.

**ACL.** The commands this backend needs, for a user limited to its keys::

    ACL SETUSER conveyor on >secret resetkeys ~cv:* resetchannels -@all
      +ping +auth +hello +select +info +config|get +time
      +evalsha +script|load +blpop +blmove +llen +lindex +lrange +lpush +rpush +lpop
      +zadd +zrem +zrange +zrevrange +zrangebyscore +zcard +zscore +zremrangebyscore
      +zremrangebyrank +hset +hsetnx +hget +hmget +hdel +hgetall +hkeys +hincrby +hexists +hlen
      +sadd +scard +sismember +smembers +incr +incrby +get +set +del +exists +expire +pexpire

(``config|get`` is optional: without it the RDB-snapshot check is skipped. On Redis 7.2 and
later also add ``+client|setinfo``: redis-py sends it on connect and ignores a refusal, which
``ACL LOG`` would still record. ``tests/test_redis_acl.py`` parses this very line and runs a
worker under it.)
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from services.backends import redact_url
from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.connection import guarded, make_client
from services.backends.redis.fleet import RedisFleet
from services.backends.redis.health import ServerWatch
from services.backends.redis.lease import Heartbeat, Hold, Tokens
from services.backends.redis.reads import BLOCK_CHUNK_S, Reader, call_many
from services.errors import BackendUnavailableError, ConveyorError, QueueFullError
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
from services.settings import QueueSettings

log = logging.getLogger("conveyor.redis")

MAX_BATCH = 1000
CAPS = {"PUT": 250, "FETCH": 100, "ACK": 50, "NACK": 100, "HAND_BACK": 100}
"""Most jobs one script call handles; a bigger batch is several calls in one pipeline."""


SCRIPTS = ("PUT", "FETCH", "ACK", "RETRY", "NACK", "DEAD", "HAND_BACK", "CONFIRM", "CANCEL")
"""The scripts a ``RedisQueue`` runs on its main client."""


def open_url(url: str, settings: QueueSettings) -> Backend:
    """The backend factory's entry point: a queue on ``url`` with a generated consumer id."""
    return RedisQueue(url, settings)


def new_consumer_id() -> str:
    """``hostname:pid:random``, unique per ``RedisQueue`` opened without an explicit id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into runs of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds (never negative), as the scripts take durations."""
    return max(round(seconds * 1000), 0)


def cancel_args(job_id: str, settings: QueueSettings) -> tuple[Any, ...]:
    """The CANCEL script's arguments after the prefix (see ``scripts.CANCEL``)."""
    bucket, field = keys.marker_at(job_id)
    return ms(settings.result_ttl_s), job_id, keys.id_key(job_id), bucket, field, CANCELLED


def cancellation(job_id: str, outcome: int, found: JobStatus | None) -> Cancellation:
    """What CANCEL's ``outcome`` means; ``found`` is the job's status, read when it said no.

    Outcome -1 (a waiting job whose marker predates ``cv:queues``, so its queue is unknown)
    is refused like a job that does not wait: its status says "queued" or "scheduled".
    """
    if outcome == 1:
        return Cancellation(job_id, cancelled=True)
    return Cancellation(job_id, cancelled=False, status=found)


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

    State changes are here; reads (and ``revive``) are its ``Reader``'s, on the same clients.
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
        self._scripts = {name: self._client.register_script(getattr(lua, name)) for name in SCRIPTS}
        self._beat_scripts = {
            name: self._beat_client.register_script(getattr(lua, name))
            for name in ("HEARTBEAT", "HAND_BACK")
        }
        self._heartbeat = Heartbeat(
            self._renew,
            self._recover,
            interval_s=min(settings.lease_s / 3, BLOCK_CHUNK_S),
            grace_s=settings.lease_s,
        )
        self._hold = Hold(settings.lease_s)
        self._watch = ServerWatch()
        self._tokens = Tokens()
        """Tokens of deliveries ``get`` returned and this process has not settled yet, and of
        those that ``started`` says are running (the others are prefetched)."""
        self._unsure = False
        """A FETCH failed on the way back: Redis may have moved jobs we never saw."""
        self._fleet: RedisFleet | None = None

    def __repr__(self) -> str:
        return f"RedisQueue({self.where!r}, consumer_id={self.consumer_id!r})"

    def _run(self, name: str, what: str, *args: Any) -> Any:
        script = self._scripts[name]
        with guarded(what, self.where):
            try:
                # EVALSHA straight away: redis-py's Script.__call__ costs a few microseconds
                # more per call, which shows on the one-round-trip put path.
                return self._client.evalsha(script.sha, 0, keys.PREFIX, *args)
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                return script(args=[keys.PREFIX, *args])

    def _run_many(self, name: str, what: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Several calls of one script, pipelined: one round trip, each call bounded."""
        if len(calls) == 1:
            return [self._run(name, what, *calls[0])]
        return call_many(self._client, self._scripts[name], what, self.where, calls)

    def _ms(self, seconds: float) -> int:
        return ms(seconds)

    def check_server(self) -> list[str]:
        """Warnings about the server (eviction policy, persistence), then this connection's
        alarms (e.g. Redis restarted empty); the warnings are logged here, and only here."""
        with guarded("check_server", self.where):
            return self._watch.check(self._client, self.where)

    def alarms(self) -> list[str]:
        """Sticky alarms this connection raised (lost data, lost lease), oldest first."""
        return list(self._watch.alarms)

    def _first_use(self) -> None:
        if self._watch.epoch is None:
            with guarded("check_server", self.where):
                self._watch.baseline(self._client)

    # -- reads (and revive), by the reader ---------------------------------------------------

    def depth(self, queue: str) -> int:
        return self._reads.depth(queue)

    def counts(self, queue: str) -> QueueCounts:
        return self._reads.counts(queue)

    def oldest_waiting_age(self, queue: str) -> float | None:
        return self._reads.oldest_waiting_age(queue)

    def done_rate(self, queue: str, window_s: float = 60.0) -> float | None:
        return self._reads.done_rate(queue, window_s)

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
        """End ``job_id`` as dead ("cancelled") if it waits (one CANCEL script); else say why."""
        outcome = int(self._run("CANCEL", "cancel", *cancel_args(job_id, self.settings)))
        return cancellation(job_id, outcome, None if outcome == 1 else self.status(job_id))

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
        return self.put_many(queue, [(job_id, body)], delay_s=delay_s, new_ids=new_ids)[0]

    def put_many(
        self,
        queue: str,
        items: Sequence[tuple[str, bytes]],
        *,
        delay_s: float = 0.0,
        new_ids: bool = False,
    ) -> list[bool]:
        """Store the ``items`` whose ids are absent; one flag per item (False: was present).

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
        chunks = chunked(elements, size)
        head = (queue, max_depth, self._ms(delay_s))
        calls = [(*head, "1" if new_ids else "0", *chunk) for chunk in chunks]
        deadline = time.monotonic() + self.settings.put_timeout_s
        pause = 0.005
        while True:
            try:
                self._first_use()
                replies = self._run_many("PUT", "put", calls)
            except BackendUnavailableError as exc:
                if time.monotonic() >= deadline:
                    raise BackendUnavailableError(
                        f"{exc} (retried for {self.settings.put_timeout_s}s): the put was not "
                        "confirmed, the jobs may or may not be stored; putting the same ids "
                        "again is safe, nothing is stored twice"
                    ) from exc
                # The lost attempt may have stored the jobs, and a worker finished them since.
                calls = [(*head, "0", *chunk) for chunk in chunks]
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

    # -- consuming ---------------------------------------------------------------------------

    def get(
        self, queues: Sequence[str], *, max_count: int = 1, timeout_s: float = 1.0
    ) -> list[Delivery]:
        """Take up to ``max_count`` jobs in one round trip; block on the doorbells if none."""
        if not queues or max_count < 1:
            return []
        self._first_use()
        self._heartbeat.start(f"conveyor-heartbeat-{self.consumer_id}")
        if self._unsure:
            self._hand_back_unseen()
        try:
            return self._get(queues, max_count, timeout_s)
        except ConveyorError:
            self._unsure = True
            raise

    def _hand_back_unseen(self) -> None:
        """Hand back jobs a lost FETCH reply left in our in-flight hash.

        The heartbeat keeps our lease alive, so lease recovery would never free them: compare
        the hash with the deliveries this process really holds and return the rest.
        """
        with guarded("get", self.where):
            found = self._client.hkeys(keys.inflight_key(self.consumer_id))
        tokens = {t.decode() if isinstance(t, bytes) else str(t) for t in found}
        unseen = sorted(tokens - self._tokens.held())
        if unseen:
            pairs = [(self.consumer_id, token) for token in unseen]
            self._run_many("NACK", "get", self._settle_calls("NACK", pairs))
            log.warning("handed back %d job(s) whose fetch reply was lost", len(unseen))
        self._unsure = False

    def _fetch_calls(self, queues: Sequence[str], max_count: int) -> list[tuple[Any, ...]]:
        lease, dl_max, dl_age = self._ms(self.settings.lease_s), *self._dead_limits()[1:]
        wants = chunked(range(min(max_count, MAX_BATCH)), CAPS["FETCH"])
        return [(self.consumer_id, len(w), lease, dl_max, dl_age, *queues) for w in wants]

    def _get(self, queues: Sequence[str], max_count: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        bells = [keys.bell_key(queue) for queue in queues]
        calls = self._fetch_calls(queues, max_count)
        fetch = functools.partial(self._run_many, "FETCH", "get", calls)
        now_ms, due_ms, flat = self._fetched(fetch)
        while not flat:
            wait_s = min(deadline - time.monotonic(), BLOCK_CHUNK_S)
            if due_ms >= 0:
                wait_s = min(wait_s, (due_ms - now_ms) / 1000)
            if wait_s > 0:
                now_ms, due_ms, flat = self._fetched(
                    functools.partial(self._wait_then_fetch, bells, wait_s, calls)
                )
            elif deadline <= time.monotonic():
                return []
            else:  # a delayed job is due now
                now_ms, due_ms, flat = self._fetched(fetch)
        return self._deliveries(queues, flat)

    def _fetched(self, send: Callable[[], list[Any]]) -> tuple[int, int, list[Any]]:
        """Send FETCH calls, merge their replies, and note what they say about our lease."""
        holding, sent_at = bool(self._tokens.held()), time.monotonic()
        replies = send()
        flat: list[Any] = []
        due = -1
        for _now, due_ms, lease, handed, items in replies:
            flat.extend(items)
            due = due_ms if due < 0 or 0 <= due_ms < due else due
            self._note_renewal(sent_at, lease, handed, holding)
        return int(replies[0][0]), int(due), flat

    def _wait_then_fetch(
        self, bells: list[str], wait_s: float, calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """BLPOP the doorbells and FETCH in one round trip; returns FETCH's replies.

        They go in one pipeline on the blocking connection: Redis holds a blocked client's
        later commands and runs them the moment the BLPOP returns (rung or timed out), so a
        woken consumer has its jobs without a second round trip.
        """
        pipe = self._blocking.pipeline(transaction=False)
        # Redis reads the timeout in milliseconds; 0 would mean "forever".
        pipe.blpop(bells, timeout=max(round(wait_s, 3), 0.001))
        for args in calls:
            pipe.evalsha(self._scripts["FETCH"].sha, 0, keys.PREFIX, *args)
        with guarded("get", self.where):
            try:
                return list(pipe.execute()[1:])
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                pass
        return self._run_many("FETCH", "get", calls)

    def _deliveries(self, queues: Sequence[str], flat: list[Any]) -> list[Delivery]:
        out = []
        for i in range(0, len(flat), 3):
            element = keys.unpack_element(flat[i + 2])
            out.append(
                Delivery(
                    job_id=element.job_id,
                    queue=queues[flat[i] - 1],
                    body=element.body,
                    receipt=keys.make_receipt(flat[i + 1], self.consumer_id),
                    redeliveries=element.redeliveries,
                )
            )
        self._tokens.add([str(flat[i + 1]) for i in range(0, len(flat), 3)])
        return out

    def _settled(self, receipts: Sequence[str]) -> None:
        self._tokens.settle([keys.parse_receipt(receipt)[1] for receipt in receipts])

    def _settle_calls(self, name: str, parts: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Capped calls of a settling script: its limits, then the flattened ``parts``."""
        limits = self._dead_limits()
        return [
            (*limits, *(x for part in chunk for x in part)) for chunk in chunked(parts, CAPS[name])
        ]

    def ack(self, completions: Sequence[Completion]) -> int:
        """Settle finished jobs in one round trip; returns how many were fenced."""
        if not completions:
            return 0
        parts = []
        for completion in completions:
            delivery = completion.delivery
            consumer, token = keys.parse_receipt(delivery.receipt)
            parts.append((consumer, token, delivery.job_id, keys.result_arg(completion.result)))
        replies = self._run_many("ACK", "ack", self._settle_calls("ACK", parts))
        self._settled([c.delivery.receipt for c in completions])
        return sum(int(reply) for reply in replies)

    def hand_back(self, deliveries: Sequence[Delivery]) -> None:
        """Hand jobs back to the front of their queues (in their order), not as failures."""
        parts = [keys.parse_receipt(d.receipt) for d in reversed(deliveries)]
        if parts:
            self._run_many("NACK", "hand_back", self._settle_calls("NACK", parts))
            self._settled([d.receipt for d in deliveries])

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        """Replace the in-flight job by ``body``, visible after ``delay_s``; False if fenced."""
        element = keys.pack_element(delivery.job_id, body, delivery.redeliveries)
        consumer, token = keys.parse_receipt(delivery.receipt)
        reason = keys.bound_reason(error).encode()
        args = (consumer, token, delivery.job_id, delivery.queue, self._ms(delay_s), element)
        accepted = bool(self._run("RETRY", "retry", *self._dead_limits(), *args, reason))
        self._settled([delivery.receipt])
        return accepted

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the in-flight job to the dead letters of its queue; False if fenced."""
        consumer, token = keys.parse_receipt(delivery.receipt)
        args = (*self._dead_limits(), consumer, token, delivery.job_id)
        reason_arg = keys.bound_reason(reason).encode()
        accepted = bool(self._run("DEAD", "dead_letter", *args, reason_arg))
        self._settled([delivery.receipt])
        return accepted

    def _dead_limits(self) -> tuple[int, int, int]:
        settings = self.settings
        age = self._ms(settings.dead_letter_max_age_s)
        return self._ms(settings.result_ttl_s), settings.dead_letter_max, age

    def reclaim(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back ``consumer_id``'s in-flight jobs now (it died of ``reason``).

        Only ``suspects`` (None: all) count as crash redeliveries; the rest go back as they
        were.
        """
        marks = [b"0"] if suspects is None else [b"1", *map(keys.id_key, suspects)]
        return self._hand_back(self._run, "reclaim", consumer_id, reason, marks)

    def _hand_back(
        self, run: Any, what: str, consumer_id: str, reason: str, marks: list[bytes]
    ) -> int:
        """HAND_BACK calls until nothing is left (each call capped)."""
        settings = self.settings
        args = (*self._dead_limits(), settings.max_redeliveries, consumer_id, reason)
        total = 0
        for _ in range(1_000_000):  # bounded: each call hands back jobs or ends the loop
            done, left = run("HAND_BACK", what, *args, CAPS["HAND_BACK"], *marks)
            total += int(done)
            if not int(left):
                break
        return total

    # -- ownership ---------------------------------------------------------------------------

    def held_until(self) -> float:
        """``time.monotonic()`` until which every delivery held is certainly still ours."""
        return self._hold.until()

    def confirm(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew the lease and keep those of ``deliveries`` still ours (one round trip)."""
        tokens = sorted(self._tokens.held() | {self._token(d) for d in deliveries})
        sent_at = time.monotonic()
        lease = self._ms(self.settings.lease_s)
        existed, handed, flags = self._run("CONFIRM", "confirm", self.consumer_id, lease, *tokens)
        gone = {token for token, flag in zip(tokens, flags, strict=True) if not flag}
        self._tokens.settle(gone)
        self._hold.confirmed(sent_at=sent_at, lease=int(existed), handed=int(handed))
        return [d for d in deliveries if self._token(d) not in gone]

    def started(self, deliveries: Sequence[Delivery], *, running: bool = True) -> None:
        """Note which deliveries run (the heartbeat publishes the others as prefetched)."""
        self._tokens.start([self._token(d) for d in deliveries], running=running)

    def _token(self, delivery: Delivery) -> str:
        return keys.parse_receipt(delivery.receipt)[1]

    def _note_renewal(self, sent_at: float, lease: int, handed: int, holding: bool) -> None:
        if self._hold.renewed(sent_at=sent_at, lease=int(lease), handed=int(handed),
                              holding=holding):  # fmt: skip
            self._watch.alarm(
                f"consumer {self.consumer_id} lost its hold at {self.where}: its in-flight "
                "jobs were handed to others (paused past its lease, or Redis lost them); "
                "prefetched jobs are confirmed before they start"
            )

    # -- leases ------------------------------------------------------------------------------

    def _renew(self) -> None:
        holding, prefetched = self._tokens.snapshot()
        lease = self._ms(self.settings.lease_s)
        sent_at = time.monotonic()
        with guarded("heartbeat", self.where):
            script = self._beat_scripts["HEARTBEAT"]
            reply = script(args=[keys.PREFIX, self.consumer_id, lease, *prefetched])
        existed, handed, epoch = reply
        self._note_renewal(sent_at, existed, handed, bool(holding & self._tokens.held()))
        self._watch.observe(epoch, self.where)

    def _recover(self) -> int:
        def run(name: str, what: str, *args: Any) -> Any:
            with guarded(what, self.where):
                return self._beat_scripts[name](args=[keys.PREFIX, *args])

        return self._hand_back(run, "recover", "", "lease expired", [b"p"])

    # -- lifecycle ---------------------------------------------------------------------------

    def connector(self, consumer_id: str) -> Connector:
        """A picklable recipe for a child consuming as ``consumer_id``."""
        return RedisConnector(self.url, self.settings, consumer_id)

    def fleet(self) -> RedisFleet:
        """The fleet state (``fleet.py``) on this queue's main client: no connection of its own."""
        if self._fleet is None:
            self._fleet = RedisFleet(self._client, self.where)
        return self._fleet

    def close(self) -> None:
        """Stop the heartbeat and drop the connections; in-flight jobs stay leased."""
        self._heartbeat.stop()
        for client in (self._client, self._blocking, self._beat_client):
            # The pools are ours (made in make_client), so Redis.close() leaves them open.
            client.connection_pool.disconnect()
