"""Concurrency permits and start rates on Redis (``JobLimiter``, for ``RedisQueue``).

``admit`` runs ACQUIRE on the tag of each concurrency limit, then RATE on each rate's, one
round trip each (``limit_scripts`` has the keys and the Lua); a refusal releases what was
taken and PARKs the job on its queue's tag. The permits this process holds are remembered by
delivery token: the heartbeat renews them (``renew``, one pipeline), and settling the
delivery releases them (``release``), which wakes as many parked jobs as permits were freed
(WAKE on each job's queue). A permit whose holder died lapses ``lease_s`` after its last
renewal; ACQUIRE then drops it, and a job parked for it tries again by then (ACQUIRE parks a
refused job until the first holder's expiry, at most ``CONCURRENCY_RETRY_S``).

A release that fails (Redis away) is logged and forgotten: the permit is no longer renewed,
so it lapses within the lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from services.backends.redis import keys
from services.backends.redis import limit_scripts as lua
from services.backends.redis.calls import ms
from services.backends.redis.connection import guarded
from services.backends.redis.lease import Token
from services.errors import ConveyorError
from services.limits import ConcurrencyLimit, Limit, RateLimit
from services.protocol import Delivery
from services.protocol.limiting import CONCURRENCY_RETRY_S

log = logging.getLogger("conveyor.redis")

Call = tuple[str, Sequence[str], Sequence[Any]]
"""``(script name, KEYS, ARGV)``: one script call."""
Held = tuple[str, list[tuple[str, int]]]
"""The permits of one delivery: its holder member and ``(limit key, permits)`` per limit."""


def limit_tag(key: str) -> str:
    """``cv:{lim:<key>}:``, the start of every key of the limit ``key`` (one cluster slot)."""
    return f"{keys.PREFIX}{{lim:{key}}}:"


def limit_call(name: str, key: str, *args: Any) -> Call:
    """A call of the limit script ``name`` on the limit ``key``."""
    tag = limit_tag(key)
    return name, [tag + suffix for suffix in lua.LIMIT_KEYS[name]], (tag, *args)


def queue_call(name: str, queue: str, *args: Any) -> Call:
    """A call of the queue script ``name`` (PARK, WAKE) on ``queue``."""
    return name, keys.declared(queue, lua.QUEUE_KEYS[name]), (keys.tag(queue), *args)


class LimitScripts:
    """The limit scripts registered on one client, called alone or pipelined."""

    def __init__(self, client: Any, where: str) -> None:
        self._client = client
        self._where = where
        names = (*lua.LIMIT_KEYS, *lua.QUEUE_KEYS)
        self._scripts = {name: client.register_script(lua.source(name)) for name in names}

    def run(self, what: str, call: Call) -> Any:
        """One call; the script is loaded first if Redis lost it."""
        name, declared, args = call
        with guarded(what, self._where):
            try:
                return self._client.evalsha(
                    self._scripts[name].sha, len(declared), *declared, *args
                )
            except redis.exceptions.NoScriptError:
                return self._scripts[name](keys=list(declared), args=list(args))

    def run_all(self, what: str, calls: Sequence[Call]) -> list[Any]:
        """Several calls in one pipeline (one round trip per node); their replies in order."""
        if len(calls) <= 1:
            return [self.run(what, call) for call in calls]
        with guarded(what, self._where):
            pipe = self._client.pipeline(transaction=False)
            for name, declared, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(declared), *declared, *args)
            out = list(pipe.execute(raise_on_error=False))
        for index, reply in enumerate(out):
            if isinstance(reply, redis.exceptions.NoScriptError):
                out[index] = self.run(what, calls[index])
            elif isinstance(reply, Exception):
                with guarded(what, self._where):
                    raise reply
        return out


class RedisLimiter:
    """Takes, holds, renews and releases one consumer's permits; parks and wakes jobs."""

    def __init__(self, client: Any, beat_client: Any, lease_s: float, where: str) -> None:
        self._scripts = LimitScripts(client, where)
        self._beat_scripts = LimitScripts(beat_client, where)
        self._lease_ms = ms(lease_s)
        self._lock = threading.Lock()
        self._held: dict[Token, Held] = {}

    def admit(self, delivery: Delivery, limits: Sequence[Limit]) -> bool:
        """``JobLimiter.admit``: False when the job was parked (or was no longer ours)."""
        consumer, token = keys.parse_receipt(delivery.receipt)
        member = f"{consumer}|{delivery.queue}|{token}"
        waiter = f"{delivery.queue}\n{delivery.job_id}"
        taken: list[tuple[str, int]] = []
        try:
            delay = self._take(limits, member, waiter, taken)
        except ConveyorError:
            self._release(member, taken)
            raise
        if delay is None:
            if taken:
                with self._lock:
                    self._held[(delivery.queue, token)] = (member, taken)
            return True
        self._release(member, taken)
        self._park(delivery, delay)
        return False

    def _take(
        self, limits: Sequence[Limit], member: str, waiter: str, taken: list[tuple[str, int]]
    ) -> int | None:
        """Permits first, then starts; None when all were taken, else the park in ms."""
        longest = ms(CONCURRENCY_RETRY_S)
        for limit in limits:
            if isinstance(limit, ConcurrencyLimit):
                args = (limit.permits, member, self._lease_ms, waiter, longest)
                held, delay = self._scripts.run("admit", limit_call("ACQUIRE", limit.key, *args))
                if not int(held):
                    return int(delay)
                taken.append((limit.key, limit.permits))
        for limit in limits:
            if isinstance(limit, RateLimit):
                interval = repr(limit.interval_s * 1000.0)
                call = limit_call("RATE", limit.key, interval, waiter)
                wait = int(self._scripts.run("admit", call))
                if wait > 0:
                    return wait
        return None

    def _park(self, delivery: Delivery, delay_ms: int) -> None:
        consumer, token = keys.parse_receipt(delivery.receipt)
        call = queue_call("PARK", delivery.queue, consumer, token, delivery.job_id, delay_ms)
        self._scripts.run("park", call)

    def release(self, tokens: Iterable[Token]) -> None:
        """Deliveries settled: free their permits and wake the jobs parked for them."""
        if not self._held:
            return
        with self._lock:
            found = [self._held.pop(token) for token in tokens if token in self._held]
        self._release_all(found)

    def _release(self, member: str, taken: Sequence[tuple[str, int]]) -> None:
        self._release_all([(member, list(taken))])

    def _release_all(self, held: Sequence[Held]) -> None:
        """RELEASE every permit of ``held`` in one pipeline, then WAKE the woken in another."""
        calls = [
            limit_call("RELEASE", key, permits, member)
            for member, taken in held
            for key, permits in taken
        ]
        if not calls:
            return
        try:
            replies = self._scripts.run_all("release", calls)
            woken = [_text(w) for reply in replies for w in reply]
            wakes = [queue_call("WAKE", *w.split("\n", 1)) for w in woken if "\n" in w]
            self._scripts.run_all("wake", wakes)
        except ConveyorError as exc:
            log.warning("could not release %d permit(s) (they lapse within the lease): %s",
                        len(calls), exc)  # fmt: skip

    def renew(self) -> int:
        """Extend every permit this process holds by the lease (heartbeat thread); returns
        how many were no longer held (lapsed while Redis or this process was away)."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return 0
        by_key: dict[str, list[str]] = {}
        for member, taken in held:
            for key, _ in taken:
                by_key.setdefault(key, []).append(member)
        calls = [
            limit_call("RENEW", key, self._lease_ms, *members) for key, members in by_key.items()
        ]
        try:
            replies = self._beat_scripts.run_all("renew permits", calls)
        except ConveyorError as exc:  # the queue's own beat must go on (and recover others)
            log.warning("could not renew concurrency permits: %s", exc)
            return 0
        missing = {_text(member) for reply in replies for member in reply}
        with self._lock:  # a permit released since the snapshot was not lost
            lost = len(missing & {member for member, _ in self._held.values()})
        if lost:
            log.warning("%d concurrency permit(s) lapsed before their renewal", lost)
        return lost


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
