"""``FleetControl`` on Redis: the fleet registry, desired sizes and pauses, one script per change.

Keys (``PREFIX`` as in ``keys``, so the ACL's ``~cv:*`` covers them), all under one hash tag
of their own, ``{fleet}``, so every script here touches one Redis Cluster slot and no queue
script touches them::

    key                   type    content
    cv:{fleet}:members    hash    supervisor id -> ``<beat ms> <ttl ms>\\n<record JSON>``
    cv:{fleet}:drop       zset    supervisor id scored by when it stops being listed (ms):
                                  last beat + LOST_KEEP_FACTOR x its TTL
    cv:{fleet}:desired    hash    group -> ``<version>\\n<set at ms>\\n<state JSON>``
    cv:{fleet}:paused     hash    queue -> ``<set at ms>\\n<set by>``
    cv:{fleet}:rev        string  the fleet's revision (INCR at every change of the above,
                                  except a beat of a supervisor already live)

Every change is one Lua script (atomic; time is the Redis clock, ``TIME``): a beat stamps the
record and moves its drop time, a new version is the old one + 1 in the same step it is stored.
Supervisors past their drop time are removed by whichever script meets them first (a beat, or
the read of ``supervisors``), so nothing here needs a sweeper. The commands used are all in the
Redis backend's documented ACL line (``queue``): EVALSHA, SCRIPT LOAD, TIME, HSET, HGET, HDEL,
HGETALL, HKEYS, HEXISTS, ZADD, ZREM, ZRANGEBYSCORE, ZREMRANGEBYSCORE, INCR, GET.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from services.backends import redact_url
from services.backends.redis.connection import command, guarded, make_client
from services.backends.redis.keys import PREFIX
from services.protocol.fleet import (
    LOST_KEEP_FACTOR,
    AutoscaleSettings,
    DesiredState,
    PauseState,
    SupervisorRecord,
    check_desired,
    is_lost,
)

MEMBERS_KEY = f"{PREFIX}{{fleet}}:members"
DROP_KEY = f"{PREFIX}{{fleet}}:drop"
DESIRED_KEY = f"{PREFIX}{{fleet}}:desired"
PAUSED_KEY = f"{PREFIX}{{fleet}}:paused"
REVISION_KEY = f"{PREFIX}{{fleet}}:rev"

_NOW = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_PRUNE = r"""
local function prune(members, drop)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', drop, '-inf', now)) do
    redis.call('HDEL', members, id)
  end
  redis.call('ZREMRANGEBYSCORE', drop, '-inf', now)
end
"""

# KEYS: members, drop, revision. ARGV: id, ttl ms, record JSON, LOST_KEEP_FACTOR.
BEAT = (
    _NOW
    + _PRUNE
    + r"""
prune(KEYS[1], KEYS[2])
local ttl = tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local back = true
if old then
  local beat, old_ttl = string.match(old, '^(%d+) (%d+)\n')
  back = not beat or now - tonumber(beat) > tonumber(old_ttl)
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d\n', now, ttl) .. ARGV[3])
redis.call('ZADD', KEYS[2], now + ttl * tonumber(ARGV[4]), ARGV[1])
if back then redis.call('INCR', KEYS[3]) end
return now
"""
)

# KEYS: members, drop, revision. ARGV: id.
LEAVE = r"""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('INCR', KEYS[3])
end
return 0
"""

# KEYS: members, drop. Returns {now ms, id, value, id, value, ...}.
LIST = (
    _NOW
    + _PRUNE
    + r"""
prune(KEYS[1], KEYS[2])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, now)
return out
"""
)

# KEYS: desired, revision. ARGV: group, state JSON, expected version ('' for any).
SET_DESIRED = (
    _NOW
    + r"""
local old = redis.call('HGET', KEYS[1], ARGV[1])
local version = old and tonumber(string.match(old, '^(%d+)\n')) or 0
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version then return false end
local value = string.format('%d\n%d\n', version + 1, now) .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('INCR', KEYS[2])
return value
"""
)

# KEYS: paused, revision. ARGV: queue, set by.
PAUSE = (
    _NOW
    + r"""
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d\n', now) .. ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""
)

# KEYS: paused, revision. ARGV: queue.
RESUME = r"""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
return 1
"""

SCRIPTS = {
    "BEAT": BEAT,
    "LEAVE": LEAVE,
    "LIST": LIST,
    "SET_DESIRED": SET_DESIRED,
    "PAUSE": PAUSE,
    "RESUME": RESUME,
}


class RedisFleet:
    """A ``FleetControl`` on one Redis database, on a client of its own or the caller's."""

    def __init__(self, client: Any, where: str, *, owned: bool = False) -> None:
        self._client = client
        self.where = where
        self._owned = owned
        self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}

    @classmethod
    def open(cls, url: str, *, timeout_s: float = 5.0) -> RedisFleet:
        """A fleet store on its own bounded client (closed by ``close``)."""
        return cls(make_client(url, timeout_s=timeout_s), redact_url(url), owned=True)

    def close(self) -> None:
        """Drop the connections if this object made them."""
        if self._owned:
            self._client.connection_pool.disconnect()

    def _run(self, name: str, what: str, keys: list[str], *args: Any) -> Any:
        with guarded(what, self.where):
            return self._scripts[name](keys=keys, args=list(args))

    def _read(self, what: str, *args: Any) -> Any:
        with guarded(what, self.where):
            return command(self._client, *args)

    def beat(self, record: SupervisorRecord, ttl_s: float) -> None:
        """Register or refresh ``record``, live for ``ttl_s`` from now (Redis time)."""
        keys = [MEMBERS_KEY, DROP_KEY, REVISION_KEY]
        ttl_ms = max(1, round(ttl_s * 1000))
        body = encode_record(record)
        self._run("BEAT", "register_in_the_fleet", keys, record.id, ttl_ms, body, LOST_KEEP_FACTOR)

    def leave(self, supervisor_id: str) -> None:
        """Forget a supervisor now."""
        self._run("LEAVE", "leave_the_fleet", [MEMBERS_KEY, DROP_KEY, REVISION_KEY], supervisor_id)

    def supervisors(self) -> list[SupervisorRecord]:
        """Live and lost supervisors, by id."""
        reply = self._run("LIST", "read_the_fleet", [MEMBERS_KEY, DROP_KEY])
        now_ms = int(reply[0])
        pairs = zip(reply[1::2], reply[2::2], strict=True)
        found = [decode_member(value, now_ms) for _, value in pairs]
        return sorted((r for r in found if r is not None), key=lambda r: r.id)

    def set_desired(
        self,
        group: str,
        processes: int,
        *,
        set_by: str,
        autoscale: AutoscaleSettings | None = None,
        reason: str = "",
        if_version: int | None = None,
    ) -> DesiredState | None:
        """Store the group's next desired state (compare-and-set with ``if_version``)."""
        check_desired(group, processes, autoscale)
        body = {"processes": processes, "set_by": set_by, "reason": reason}
        body["autoscale"] = dataclasses.asdict(autoscale) if autoscale else None
        expected = "" if if_version is None else str(if_version)
        keys = [DESIRED_KEY, REVISION_KEY]
        value = self._run(
            "SET_DESIRED", "set_the_desired_size", keys, group, json.dumps(body), expected
        )
        return decode_desired(group, value) if value else None

    def desired(self, group: str) -> DesiredState | None:
        """The group's desired state, if any."""
        value = self._read("read_the_desired_size", "HGET", DESIRED_KEY, group)
        return decode_desired(group, value) if value else None

    def groups(self) -> list[str]:
        """Groups with a desired state or a listed supervisor."""
        fields: list[bytes] = self._read("read_the_groups", "HKEYS", DESIRED_KEY)
        named = {field.decode() for field in fields}
        return sorted(named | {record.group for record in self.supervisors()})

    def pause(self, queue: str, *, set_by: str = "") -> bool:
        """Pause ``queue``; False if it was paused already."""
        keys = [PAUSED_KEY, REVISION_KEY]
        return bool(self._run("PAUSE", "pause_the_queue", keys, queue, set_by))

    def resume(self, queue: str) -> bool:
        """Resume ``queue``; False if it was not paused."""
        keys = [PAUSED_KEY, REVISION_KEY]
        return bool(self._run("RESUME", "resume_the_queue", keys, queue))

    def paused(self) -> set[str]:
        """Names of the paused queues."""
        fields: list[bytes] = self._read("read_the_paused_queues", "HKEYS", PAUSED_KEY)
        return {field.decode() for field in fields}

    def pauses(self) -> list[PauseState]:
        """Paused queues with who paused them and when, by name."""
        # redis-py turns an HGETALL reply into a dict, even through execute_command.
        found: dict[bytes, bytes] = self._read("read_the_paused_queues", "HGETALL", PAUSED_KEY)
        states = [decode_pause(queue.decode(), value) for queue, value in found.items()]
        return sorted(states, key=lambda state: state.queue)

    def revision(self) -> int:
        """Moves at every change of desired state, pause or membership."""
        value = self._read("read_the_fleet_revision", "GET", REVISION_KEY)
        return int(value) if value else 0


_NOT_STORED = ("last_beat", "lost")
_RECORD_FIELDS = {f.name for f in dataclasses.fields(SupervisorRecord)} - set(_NOT_STORED)


def encode_record(record: SupervisorRecord) -> str:
    """The JSON a beat stores (what the backend fills in left out)."""
    fields = dataclasses.asdict(record)
    for name in _NOT_STORED:
        del fields[name]
    return json.dumps(fields, separators=(",", ":"))


def decode_member(value: bytes, now_ms: int) -> SupervisorRecord | None:
    """A record from ``cv:fleet:members``; None if it is not one this version can read."""
    try:
        stamp, body = value.split(b"\n", 1)
        beat_ms, ttl_ms = (int(part) for part in stamp.split(b" "))
        fields = {k: v for k, v in json.loads(body).items() if k in _RECORD_FIELDS}
        fields["queues"] = tuple(fields.get("queues", ()))
        beat_s = beat_ms / 1000
        lost = is_lost(beat_s, ttl_ms / 1000, now_ms / 1000)
        return SupervisorRecord(**fields, last_beat=beat_s, lost=lost)
    except (ValueError, TypeError):  # written by another version: leave it out, drop in time
        return None


def decode_desired(group: str, value: bytes) -> DesiredState:
    """A desired state from ``cv:fleet:desired``."""
    version, set_at, body = value.split(b"\n", 2)
    fields = json.loads(body)
    auto = fields.get("autoscale")
    return DesiredState(
        group=group,
        processes=int(fields["processes"]),
        version=int(version),
        set_by=str(fields.get("set_by", "")),
        set_at=int(set_at) / 1000,
        autoscale=AutoscaleSettings(**auto) if auto else None,
        reason=str(fields.get("reason", "")),
    )


def decode_pause(queue: str, value: bytes) -> PauseState:
    """A pause from ``cv:fleet:paused``."""
    set_at, _, set_by = value.partition(b"\n")
    return PauseState(queue, set_by.decode(errors="replace"), int(set_at) / 1000)
