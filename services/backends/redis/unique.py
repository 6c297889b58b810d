"""Unique jobs on Redis: the UNIQUE script, which stores a job only if its key is free.

A unique key of queue ``q`` is the string ``T u:<digest>`` (``T = cv:{q}:``, the queue's tag;
the digest is ``services.unique_keys.key_digest`` of the key, so any key makes a safe, bounded
name), holding the id of the job that took it, in the layout of an element's id: its length
byte, then the id (a 32-hex-digit id as 16 raw bytes, length 0). The script reads the holder
and looks for it where a live job is, all in one atomic step on the queue's node:

* a waiting marker (``keys``: queued, delayed, or waiting for a retry, since RETRY marks it
  again) or an entry in ``T running`` means the holder lives: nothing is stored, its id is the
  answer;
* otherwise (done, dead, cancelled: CANCEL drops the marker; expired; never stored) the key is
  free: the job is put exactly as PUT puts one (put-if-absent by id, the full checks) and, if
  stored, takes the key, with ``PX ttl`` for ``unique_for``.

Why a key per unique key and not a field of one hash: ``unique_for`` is a TTL, and only keys
expire on Redis 6.2 (field TTLs came in 7.4). A key without a TTL stays after its holder
finished (~100 bytes) until the next put with it finds it stale and replaces it: a job enqueued
once with a key that never comes again leaves one such key (see ``put_unique``).

Concurrent producers cannot both take a key: the check and the put are one script, and Redis
runs one script at a time. A put whose reply was lost is sent again with the same id until
``put_timeout_s``; the first attempt's job, if stored, holds the key, so the repeat answers its
id (or, had it finished meanwhile, finds the id present and stores nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from services.backends.redis import keys
from services.backends.redis import scripts as lua
from services.backends.redis.calls import ScriptCall, ScriptHeads, Scripts, ms
from services.errors import BackendUnavailableError, QueueFullError
from services.settings import QueueSettings
from services.unique_keys import key_digest

UNIQUE_KEYS = ("waiting", "delayed", "bell", "cancelled", "running", "seq")
"""The script's ``KEYS``: fields of ``keys.QueueKeys``, as PUT declares them."""

# ARGV: tag, max_depth (0: unbounded), delay_ms, ttl_ms (0: none), key digest, element
# -> {1, id} (stored, holds the key) | {0, id} (the holder, or the id was present) | -1 (full)
UNIQUE_BODY = r"""
local max_depth, delay, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local uk, e = T .. 'u:' .. ARGV[5], ARGV[6]
local why = bad(e)
if why then return redis.error_reply('UNIQUE element: ' .. why) end
local held = redis.call('GET', uk)
if held then
  -- The holder as an element without a body: the helpers find its marker and its id.
  local h = '\0' .. held
  if not bad(h) then
    local k, f = mark_at(h)
    if redis.call('HEXISTS', k, f) == 1 or redis.call('HEXISTS', K.running, id_key(h)) == 1 then
      return {0, id_text(h)}
    end
  end
end
local id, idk = id_text(e), id_key(e)
local k, f = mark_at(e)
if redis.call('HEXISTS', k, f) == 1 or redis.call('HEXISTS', K.running, idk) == 1
    or redis.call('EXISTS', T .. 'j:' .. id, T .. 'f:' .. id) > 0
    or redis.call('HEXISTS', K.cancelled, idk) == 1 then
  return {0, id}
end
local state = QUEUED
if delay > 0 then
  state = SCHEDULED
  redis.call('ZADD', K.delayed, now_ms() + delay, redis.call('INCR', K.seq) .. ':' .. e)
else
  if max_depth > 0 and redis.call('LLEN', K.waiting) + 1 > max_depth then return -1 end
  redis.call('RPUSH', K.waiting, e)
end
redis.call('HSET', k, f, state)
ring()
local n = string.byte(e, 2)
local holder = string.sub(e, 2, 2 + (n == 0 and 16 or n))
if ttl > 0 then
  redis.call('SET', uk, holder, 'PX', ttl)
else
  redis.call('SET', uk, holder)
end
return {1, id}
"""


def unique_script() -> str:
    """The UNIQUE script: its ``KEYS`` bound, the queue scripts' helpers, then its body."""
    fields = ", ".join(f"{field} = KEYS[{i}]" for i, field in enumerate(UNIQUE_KEYS, 1))
    return f"local K = {{{fields}}}\n{lua.COMMON}{UNIQUE_BODY}"


class UniqueHeads(ScriptHeads):
    """``ScriptHeads`` of UNIQUE, whose Lua lives here rather than in ``scripts``; mixed with
    ``Scripts`` (below) or the asyncio backend's ``AsyncScripts``."""

    def __init__(self, client: Any, where: str) -> None:
        super().__init__(client, (), where)
        self._scripts["UNIQUE"] = client.register_script(unique_script())

    def head(self, name: str, queue: str) -> tuple[Any, ...]:
        found = self._heads.get((name, queue))
        if found is None:
            declared = keys.declared(queue, UNIQUE_KEYS)
            found = (self._scripts[name].sha, len(declared), *declared, keys.tag(queue))
            self._heads[(name, queue)] = found
        return found

    def loader(self, name: str, queue: str, args: Sequence[Any]) -> Any:
        declared = keys.declared(queue, UNIQUE_KEYS)
        return self._scripts[name](keys=list(declared), args=[keys.tag(queue), *args])


class UniqueScripts(UniqueHeads, Scripts):
    """``Scripts`` that run UNIQUE on a blocking client."""


Write = Callable[[Sequence[ScriptCall]], list[Any]]
"""Runs script calls that store jobs (confirmed by replicas when the settings ask)."""


def unique_args(
    job: tuple[str, bytes], *, key: str, ttl_s: float | None, delay_s: float, max_depth: int
) -> tuple[Any, ...]:
    """UNIQUE's arguments after the tag for ``job`` = ``(job_id, body)``."""
    element = keys.pack_element(*job)
    ttl_ms = 0 if ttl_s is None else max(ms(ttl_s), 1)
    return max_depth, ms(delay_s), ttl_ms, key_digest(key), element


class Attempts:
    """When a unique put is sent again: after a lost reply or while the queue is full, until
    ``put_timeout_s`` (then it raises), pausing a little longer each time."""

    def __init__(self, queue: str, settings: QueueSettings) -> None:
        self._queue = queue
        self._settings = settings
        self._deadline = time.monotonic() + settings.put_timeout_s
        self._pause_s = 0.005

    def answered(self, reply: Any) -> str | None:
        """The holder's id from UNIQUE's ``reply``; None to send again (the queue is full).

        Raises:
            QueueFullError: the queue stayed full; nothing stored.
        """
        if not isinstance(reply, int):
            _, holder = reply
            return holder.decode() if isinstance(holder, bytes) else str(holder)
        if time.monotonic() >= self._deadline:
            raise QueueFullError(
                f"queue {self._queue!r} stayed at its limit of {self._settings.max_depth} for "
                f"{self._settings.put_timeout_s}s; nothing was enqueued"
            )
        return None

    def lost(self, exc: BackendUnavailableError) -> None:
        """The reply was lost: send again, unless past the deadline.

        Raises:
            BackendUnavailableError: not confirmed (may or may not be stored; putting the same
                id and key again is safe).
        """
        if time.monotonic() >= self._deadline:
            raise BackendUnavailableError(
                f"{exc} (retried for {self._settings.put_timeout_s}s): the unique put was not "
                "confirmed; putting the same id and key again is safe"
            ) from exc

    def pause_s(self) -> float:
        """How long to wait before sending again."""
        pause = min(self._pause_s, max(self._deadline - time.monotonic(), 0.0))
        self._pause_s = min(self._pause_s * 2, 0.2)
        return pause


def put_unique(write: Write, queue: str, args: tuple[Any, ...], settings: QueueSettings) -> str:
    """Run UNIQUE with ``args`` (``unique_args``) until answered (``Attempts``); the id
    holding the key."""
    attempts = Attempts(queue, settings)
    while True:
        try:
            [reply] = write([("UNIQUE", queue, args)])
        except BackendUnavailableError as exc:
            attempts.lost(exc)
        else:
            holder = attempts.answered(reply)
            if holder is not None:
                return holder
        time.sleep(attempts.pause_s())
