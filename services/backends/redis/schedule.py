"""``ScheduleStore`` on Redis: the schedulers' lease and the due times fired, one script each.

Keys (under their own hash tag ``{cron}``, so each script touches one Redis Cluster slot and no
queue script touches them)::

    key                type    content
    cv:{cron}:leader   string  the leading scheduler's id, with the lease as its TTL (PX);
                               ``cv:{cron}:leader:<group>`` for a named set of entries
    cv:{cron}:last     hash    periodic entry name -> newest due time fired (epoch ms)

Changes are Lua scripts, so "take the lease unless someone else holds it" and "keep the larger
due time" are atomic; the lease lapses in Redis time. Commands used (all in the documented ACL
line, ``queue``): EVALSHA, SCRIPT LOAD, GET, SET, DEL, HGET, HSET, HMGET.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.backends.redis.connection import command, guarded
from services.backends.redis.keys import PREFIX

LEADER_KEY = f"{PREFIX}{{cron}}:leader"
LAST_KEY = f"{PREFIX}{{cron}}:last"

# KEYS: leader. ARGV: scheduler id, ttl ms.
LEAD = r"""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: leader. ARGV: scheduler id.
RESIGN = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: last. ARGV: entry name, due ms.
MARK = r"""
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if old == nil or old < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""

SCRIPTS = {"LEAD": LEAD, "RESIGN": RESIGN, "MARK": MARK}


def leader_key(group: str) -> str:
    """The lease of one set of periodic entries (``""``: the key of the unnamed set)."""
    return f"{LEADER_KEY}:{group}" if group else LEADER_KEY


class RedisSchedule:
    """A ``ScheduleStore`` on a client of the caller's (a ``RedisQueue``'s main client)."""

    def __init__(self, client: Any, where: str) -> None:
        self._client = client
        self.where = where
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}

    def _run(self, name: str, what: str, key: str, *args: Any) -> Any:
        with guarded(what, self.where):
            return self._scripts[name](keys=[key], args=list(args))

    def lead(self, scheduler_id: str, ttl_s: float, *, group: str = "") -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        key = leader_key(group)
        return bool(self._run("LEAD", "lead_the_schedulers", key, scheduler_id, ttl_ms))

    def resign(self, scheduler_id: str, *, group: str = "") -> None:
        self._run("RESIGN", "resign_as_scheduler", leader_key(group), scheduler_id)

    def leader(self, *, group: str = "") -> str | None:
        with guarded("read_the_scheduler", self.where):
            found = command(self._client, "GET", leader_key(group))
        return found.decode() if isinstance(found, bytes) else found

    def last_fired(self, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        with guarded("read_the_fired_times", self.where):
            values = command(self._client, "HMGET", LAST_KEY, *names)
        return {name: int(v) / 1000 for name, v in zip(names, values, strict=True) if v}

    def mark_fired(self, name: str, due: float) -> None:
        self._run("MARK", "mark_fired", LAST_KEY, name, round(due * 1000))
