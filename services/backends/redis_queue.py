"""The Redis backend: lists for queues, one Lua script per state change, leases per consumer.

Why lists and Lua, not Streams or BLMOVE alone:

* **Memory.** A waiting job is one list element (18 bytes of header + the body) in a listpack;
  a stream entry costs more per entry and XACK alone leaves it in the stream (XDEL too).
* **Several queues in priority order, batched.** One ``FETCH`` script pops up to ``max_count``
  jobs from the queues in order (``LPOP key count``, Redis 6.2) and records them as in flight in
  the same atomic step; no BRPOP-then-write window. BLMOVE can wait on one source only.
* **Blocking without polling.** A script cannot block, so an idle consumer BLPOPs the queues'
  *doorbells* (``cv:b:<queue>``, at most one item, rung by every push) with ``FETCH`` pipelined
  behind the ``BLPOP``: Redis runs it the moment the wait ends, so enqueue -> get is one round
  trip for a waiting consumer. Waits are cut into chunks of at most ``BLOCK_CHUNK_S`` (and
  until the next delayed job is due), so delayed jobs are moved in time and a dead Redis is
  noticed.
* **Time** is the Redis clock (``TIME`` in scripts), so hosts' clocks do not matter.

Data flow (key layout in ``redis_keys``)::

    put --PUT--> cv:q:<queue> --FETCH--> cv:i:<consumer> --ACK-------> cv:j:<id> (status, TTL)
         \\--> cv:d:<queue> --^ (due)       |  |  \\--RETRY--> cv:d / cv:q, cv:f:<id>
                                           |  \\--DEAD--------> cv:dl:<queue>
                                           \\--HANDBACK (release, lease expired)--> cv:q front
                                                (redeliveries + 1, or cv:dl when past the limit)

**Leases and fencing.** ``FETCH`` gives each delivery a token from ``cv:seq`` and stores it in
the consumer's hash ``cv:i:<consumer>``; the receipt is ``<token>:<consumer>``. The consumer's
lease (``cv:leases``) is renewed by a heartbeat thread (``redis_lease``), which also recovers
expired consumers. Recovery deletes the expired consumer's hash, so a settlement that arrives
later finds no token and is rejected (counted in ``cv:stats`` field ``fenced``).

**Status** is cheap: nothing is written per queued job; ``cv:running`` maps in-flight ids to
their consumer; settled jobs get a record with a TTL. ``cv:j:<id>`` is a one-item list so that
``wait_finished`` can block on it with ``BLMOVE key key LEFT LEFT``, which returns the item
without removing it (every waiter sees it) and wakes when ``ACK``/``DEAD`` push it.

**ACL.** The commands this backend needs, for a user limited to its keys::

    ACL SETUSER conveyor on >secret resetkeys ~cv:* resetchannels -@all
      +ping +auth +hello +select +info +config|get +time
      +evalsha +script|load +blpop +blmove +llen +lindex +lrange +lpush +rpush +lpop
      +zadd +zrem +zrange +zrevrange +zrangebyscore +zcard +zscore +zremrangebyscore
      +zremrangebyrank +hset +hget +hmget +hdel +hgetall +hkeys +hincrby +hexists
      +sadd +scard +sismember +smembers +incr +incrby +get +set +del +exists +expire +pexpire

(``config|get`` is optional: without it the RDB-snapshot check is skipped. On Redis 7.2 and
later also add ``+client|setinfo``: redis-py sends it on connect and ignores a refusal, which
``ACL LOG`` would still record. ``tests/test_redis_acl.py`` parses this very line and runs a
worker under it.)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from services.backends import redact_url
from services.backends import redis_keys as keys
from services.backends import redis_scripts as lua
from services.backends.redis_conn import guarded, make_client
from services.backends.redis_health import ServerWatch
from services.backends.redis_lease import Heartbeat
from services.backends.redis_reads import BLOCK_CHUNK_S, Reader
from services.errors import ConveyorError, QueueFullError
from services.jobqueue import Completion, Connector, Delivery, JobQueue
from services.settings import QueueSettings

log = logging.getLogger("conveyor.redis")

MAX_BATCH = 1000


def open_url(url: str, settings: QueueSettings) -> JobQueue:
    """The backend factory's entry point: a queue on ``url`` with a generated consumer id."""
    return RedisQueue(url, settings)


def new_consumer_id() -> str:
    """``hostname:pid:random``, unique per ``RedisQueue`` opened without an explicit id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, repr=False)
class RedisConnector:
    """A picklable recipe for a child to consume as ``consumer_id``."""

    url: str
    settings: QueueSettings
    consumer_id: str

    @property
    def durable(self) -> bool:
        return True  # the jobs live in Redis, whoever started this process

    def open(self) -> JobQueue:
        """Connect in the child."""
        return RedisQueue(self.url, self.settings, consumer_id=self.consumer_id)

    def __repr__(self) -> str:
        return f"RedisConnector({redact_url(self.url)!r}, consumer_id={self.consumer_id!r})"


class RedisQueue(Reader):
    """A ``JobQueue`` on one Redis database; see the module docstring for the design."""

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
        blocking = make_client(url, timeout_s=BLOCK_CHUNK_S + op_s)
        super().__init__(make_client(url, timeout_s=op_s), blocking, self.where)
        self._beat_client = make_client(url, timeout_s=op_s)
        self._scripts = {
            name: self._client.register_script(getattr(lua, name))
            for name in ("PUT", "FETCH", "ACK", "RETRY", "NACK", "DEAD", "HANDBACK")
        }
        self._beat_scripts = {
            name: self._beat_client.register_script(getattr(lua, name))
            for name in ("HEARTBEAT", "HANDBACK")
        }
        self._heartbeat = Heartbeat(
            self._renew,
            self._recover,
            interval_s=min(settings.lease_s / 3, BLOCK_CHUNK_S),
            grace_s=settings.lease_s,
        )
        self._watch = ServerWatch()
        self._checked = False
        self._outstanding: set[str] = set()
        """Tokens of deliveries ``get`` returned and this process has not settled yet."""
        self._unsure = False
        """A FETCH failed on the way back: Redis may have moved jobs we never saw."""

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

    def _ms(self, seconds: float) -> int:
        return max(round(seconds * 1000), 0)

    def check_server(self) -> list[str]:
        """Warnings about the server (eviction policy, persistence, restarted empty); logged.

        Call it at start and now and then (the worker does): a Redis that restarted without
        its data is reported here instead of looking like a drained queue.
        """
        self._checked = True
        with guarded("check_server", self.where):
            return self._watch.check(self._client, self.where)

    def _first_use(self) -> None:
        if not self._checked:
            self.check_server()

    # -- producing ---------------------------------------------------------------------------

    def put(self, queue: str, job_id: str, body: bytes, *, delay_s: float = 0.0) -> None:
        """Store one job in one round trip (see ``JobQueue.put``)."""
        self.put_many(queue, [(job_id, body)], delay_s=delay_s)

    def put_many(
        self, queue: str, items: Sequence[tuple[str, bytes]], *, delay_s: float = 0.0
    ) -> None:
        """Store all ``items`` with one script call; all or nothing for a bounded queue."""
        if not items:
            return
        self._first_use()
        elements = [keys.pack_element(job_id, body) for job_id, body in items]
        max_depth = self.settings.max_depth or 0
        if max_depth and len(elements) > max_depth and delay_s <= 0:
            raise QueueFullError(f"{len(elements)} jobs can never fit {queue!r} ({max_depth})")
        args = (queue, max_depth, self._ms(delay_s), *elements)
        if self._run("PUT", "put", *args) >= 0:
            return
        deadline = time.monotonic() + self.settings.put_timeout_s
        pause = 0.005
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            if self._run("PUT", "put", *args) >= 0:
                return
            pause = min(pause * 2, 0.2)
        raise QueueFullError(
            f"queue {queue!r} stayed at its limit of {max_depth} for "
            f"{self.settings.put_timeout_s}s; nothing was enqueued"
        )

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
        unseen = tokens - self._outstanding
        if unseen:
            args = [part for token in sorted(unseen) for part in (self.consumer_id, token)]
            self._run("NACK", "get", *args)
            log.warning("handed back %d job(s) whose fetch reply was lost", len(unseen))
        self._unsure = False

    def _get(self, queues: Sequence[str], max_count: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        bells = [keys.bell_key(queue) for queue in queues]
        args = (self.consumer_id, min(max_count, MAX_BATCH), self._ms(self.settings.lease_s))
        now_ms, due_ms, flat = self._run("FETCH", "get", *args, *queues)
        while not flat:
            wait_s = min(deadline - time.monotonic(), BLOCK_CHUNK_S)
            if due_ms >= 0:
                wait_s = min(wait_s, (due_ms - now_ms) / 1000)
            if wait_s > 0:
                now_ms, due_ms, flat = self._wait_then_fetch(bells, wait_s, (*args, *queues))
            elif deadline <= time.monotonic():
                return []
            else:  # a delayed job is due now
                now_ms, due_ms, flat = self._run("FETCH", "get", *args, *queues)
        return self._deliveries(queues, flat)

    def _wait_then_fetch(self, bells: list[str], wait_s: float, args: tuple[Any, ...]) -> Any:
        """BLPOP the doorbells and FETCH in one round trip; returns FETCH's reply.

        Both go in one pipeline on the blocking connection: Redis holds a blocked client's
        later commands and runs them the moment the BLPOP returns (rung or timed out), so a
        woken consumer has its jobs without a second round trip.
        """
        pipe = self._blocking.pipeline(transaction=False)
        # Redis reads the timeout in milliseconds; 0 would mean "forever".
        pipe.blpop(bells, timeout=max(round(wait_s, 3), 0.001))
        pipe.evalsha(self._scripts["FETCH"].sha, 0, keys.PREFIX, *args)
        with guarded("get", self.where):
            try:
                return pipe.execute()[1]
            except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                pass
        return self._run("FETCH", "get", *args)

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
            self._outstanding.add(str(flat[i + 1]))
        return out

    def _settled(self, receipts: Sequence[str]) -> None:
        for receipt in receipts:
            self._outstanding.discard(keys.parse_receipt(receipt)[1])

    def ack(self, completions: Sequence[Completion]) -> int:
        """Settle finished jobs in one round trip; returns how many were fenced."""
        if not completions:
            return 0
        args: list[Any] = [self._ms(self.settings.result_ttl_s)]
        for completion in completions:
            delivery = completion.delivery
            args.extend(keys.parse_receipt(delivery.receipt))
            args.append(delivery.job_id)
            args.append(keys.result_arg(completion.result))
        fenced = int(self._run("ACK", "ack", *args))
        self._settled([c.delivery.receipt for c in completions])
        return fenced

    def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Hand jobs back to the front of their queues (in their order), not as failures."""
        args: list[str] = []
        for delivery in reversed(deliveries):
            args.extend(keys.parse_receipt(delivery.receipt))
        if args:
            self._run("NACK", "nack", *args)
            self._settled([d.receipt for d in deliveries])

    def retry(self, delivery: Delivery, body: bytes, *, delay_s: float, error: str) -> bool:
        """Replace the in-flight job by ``body``, visible after ``delay_s``; False if fenced."""
        element = keys.pack_element(delivery.job_id, body, delivery.redeliveries)
        consumer, token = keys.parse_receipt(delivery.receipt)
        ttl, delay = self._ms(self.settings.result_ttl_s), self._ms(delay_s)
        reason = keys.bound_reason(error).encode()
        args = (ttl, consumer, token, delivery.job_id, delivery.queue, delay, element, reason)
        accepted = bool(self._run("RETRY", "retry", *args))
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

    def release(
        self, consumer_id: str, reason: str, *, suspects: Collection[str] | None = None
    ) -> int:
        """Hand back ``consumer_id``'s in-flight jobs now (it died of ``reason``).

        Only ``suspects`` (None: all) count as crash redeliveries; the rest go back as they
        were.
        """
        marks = [b"0"] if suspects is None else [b"1", *map(keys.id_key, suspects)]
        args = (*self._dead_limits(), self.settings.max_redeliveries, consumer_id, reason)
        return int(self._run("HANDBACK", "release", *args, *marks))

    # -- leases ------------------------------------------------------------------------------

    def _renew(self) -> None:
        with guarded("heartbeat", self.where):
            lease = self._ms(self.settings.lease_s)
            self._beat_scripts["HEARTBEAT"](args=[keys.PREFIX, self.consumer_id, lease])

    def _recover(self) -> int:
        args = (*self._dead_limits(), self.settings.max_redeliveries, "", "lease expired", "0")
        with guarded("recover", self.where):
            return int(self._beat_scripts["HANDBACK"](args=[keys.PREFIX, *args]))

    # -- lifecycle ---------------------------------------------------------------------------

    def connector(self, consumer_id: str) -> Connector:
        """A picklable recipe for a child consuming as ``consumer_id``."""
        return RedisConnector(self.url, self.settings, consumer_id)

    def close(self) -> None:
        """Stop the heartbeat and drop the connections; in-flight jobs stay leased."""
        self._heartbeat.stop()
        for client in (self._client, self._blocking, self._beat_client):
            # The pools are ours (made in make_client), so Redis.close() leaves them open.
            client.connection_pool.disconnect()
