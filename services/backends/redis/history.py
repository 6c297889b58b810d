"""``HistoryStore`` on Redis: a queue's snapshots in one capped hash per resolution.

Keys (in the queue's hash tag, so a queue's history lives in the queue's Cluster slot)::

    key            type  content
    T hs:minute    hash  bucket start (epoch s) -> "done,dead,waiting,delayed,in_flight,
                         oldest_ms" (``history.pack``); the newest 120 kept
    T hs:quarter   hash  the same per quarter hour; the newest 100 kept
    cv:{cv}:hs:latency:minute   hash  bucket start -> "index:count,..." (``pack_histogram``):
                         jobs started in the minute, by enqueue-to-start latency bucket
                         (``services.stats``), fleet-wide; the newest 120 kept
    cv:{cv}:hs:latency:quarter  hash  the same per quarter hour; the newest 100 kept

Both stay under ``hash-max-listpack-entries`` (128 by default), so Redis keeps them in its
compact listpack encoding: ``scripts/bench_dashboard.py --memory`` measures the bytes. Each
key expires ``EXPIRE_S`` after its last write, so the history of a queue nobody samples goes.

``look`` reads every queue's counts and the head of its list in one pipeline (the reads of
``reads.counts`` and ``reads.oldest_waiting_age``, four commands a queue, one round trip).
``record`` is one pipeline of ``MERGE`` calls (one per queue and resolution): the script merges
the new snapshot into the bucket (smallest totals, largest gauges: ``history.merge``, so
samplers that overlap never double count) and drops the oldest buckets past the cap, in one
atomic step. ``history`` is one pipeline of ``HGETALL``. ``add_latency`` is one ``ADD`` call per
resolution: the script adds the counts to the bucket's and caps the hash like ``MERGE``.
Commands (in the documented ACL): EVALSHA, SCRIPT LOAD, HGET, HSET, HLEN, HKEYS, HDEL, EXPIRE,
HGETALL, and for ``look`` LLEN, ZCARD, HMGET, LINDEX.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from services.backends.redis import keys
from services.backends.redis.connection import guarded
from services.backends.redis.reads import add_counts, counts_from
from services.gauges import enqueued_at
from services.protocol.history import (
    RESOLUTIONS,
    Bucket,
    LatencyBucket,
    Resolution,
    Snapshot,
    pack,
    pack_histogram,
    snapshot_of,
    unpack,
    unpack_histogram,
)

EXPIRE_S = 2 * 86_400
"""A queue's history goes this long after the last sample (a queue no longer used)."""

# The end of both scripts: write the bucket, drop the oldest past the cap, push the expiry.
# KEYS: the hash. ARGV: bucket start, (value), keep, expire s. ``value``: the bucket's new text.
CAP = r"""
redis.call('HSET', KEYS[1], ARGV[1], value)
local keep = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[1]) > keep then
  local starts = redis.call('HKEYS', KEYS[1])
  table.sort(starts, function(x, y) return tonumber(x) < tonumber(y) end)
  for i = 1, #starts - keep do redis.call('HDEL', KEYS[1], starts[i]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: the hash. ARGV: bucket start, packed snapshot, keep, expire s, how many totals.
MERGE = r"""
local old = redis.call('HGET', KEYS[1], ARGV[1])
local value = ARGV[2]
if old then
  local a, b = {}, {}
  for n in string.gmatch(old, '[^,]+') do a[#a + 1] = tonumber(n) end
  for n in string.gmatch(ARGV[2], '[^,]+') do b[#b + 1] = tonumber(n) end
  local totals = tonumber(ARGV[5])
  for i = 1, #b do
    local x = a[i] or b[i]
    if i <= totals then b[i] = math.min(x, b[i]) else b[i] = math.max(x, b[i]) end
    b[i] = string.format('%d', b[i])
  end
  value = table.concat(b, ',')
end
"""
MERGE += CAP

# KEYS: the latency hash. ARGV: bucket start, packed histogram ("index:count,..."), keep,
# expire s. Adds the counts to the bucket's (HINCRBY-like, for a packed histogram).
ADD = r"""
local sum = {}
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
for text in string.gmatch(old .. ',' .. ARGV[2], '[^,]+') do
  local i, c = string.match(text, '(%d+):(%d+)')
  i = tonumber(i)
  sum[i] = (sum[i] or 0) + tonumber(c)
end
local indexes = {}
for i in pairs(sum) do indexes[#indexes + 1] = i end
table.sort(indexes)
local parts = {}
for _, i in ipairs(indexes) do parts[#parts + 1] = string.format('%d:%d', i, sum[i]) end
local value = table.concat(parts, ',')
"""
ADD += CAP
TOTALS = 2
"""``done`` and ``dead`` come first in a packed snapshot and merge by min."""


def history_key(queue: str, resolution: Resolution) -> str:
    """``T hs:<resolution>``: the queue's buckets at ``resolution``."""
    return f"{keys.tag(queue)}hs:{resolution.name}"


def latency_key(resolution: Resolution) -> str:
    """``cv:{cv}:hs:latency:<resolution>``: the fleet's enqueue-to-start latency buckets."""
    return f"{keys.PREFIX}{{cv}}:hs:latency:{resolution.name}"


class RedisHistory:
    """A ``HistoryStore`` on a client of the caller's (a ``RedisQueue``'s main client)."""

    def __init__(self, client: Any, where: str) -> None:
        self._client = client
        self.where = where
        self._merge = client.register_script(MERGE)
        self._add = client.register_script(ADD)

    def record(self, at: float, snapshots: Mapping[str, Snapshot]) -> None:
        calls = [
            (history_key(queue, r), r.bucket(at), pack(snapshot), r.keep)
            for queue, snapshot in snapshots.items()
            for r in RESOLUTIONS
        ]
        if not calls:
            return
        with guarded("record_history", self.where):
            pipe = self._client.pipeline(transaction=False)
            for key, start, packed, keep in calls:
                pipe.evalsha(self._merge.sha, 1, key, start, packed, keep, EXPIRE_S, TOTALS)
            replies = pipe.execute(raise_on_error=False)
            for call, reply in zip(calls, replies, strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError):  # restarted, or flushed
                    key, start, packed, keep = call
                    self._merge(keys=[key], args=[start, packed, keep, EXPIRE_S, TOTALS])
                elif isinstance(reply, Exception):
                    raise reply

    def add_latency(self, at: float, histogram: Mapping[int, int]) -> None:
        packed = pack_histogram(histogram)
        if not packed:
            return
        with guarded("record_latency", self.where):
            for r in RESOLUTIONS:  # a script call each: one key, one Cluster slot
                self._add(keys=[latency_key(r)], args=[r.bucket(at), packed, r.keep, EXPIRE_S])

    def latency_history(self, resolution: Resolution) -> list[LatencyBucket]:
        with guarded("read_history", self.where):
            reply = self._client.hgetall(latency_key(resolution))
        return sorted((int(start), unpack_histogram(raw)) for start, raw in reply.items())

    def history(self, queues: Sequence[str], resolution: Resolution) -> dict[str, list[Bucket]]:
        if not queues:
            return {}
        with guarded("read_history", self.where):
            pipe = self._client.pipeline(transaction=False)
            for queue in queues:
                pipe.hgetall(history_key(queue, resolution))
            replies = pipe.execute()
        return {
            queue: sorted((int(start), unpack(raw)) for start, raw in reply.items())
            for queue, reply in zip(queues, replies, strict=True)
        }

    def look(self, queues: Sequence[str]) -> dict[str, Snapshot]:
        if not queues:
            return {}
        with guarded("read_queues", self.where):
            pipe = self._client.pipeline(transaction=False)
            for queue in queues:
                add_counts(pipe, queue)
                pipe.lindex(keys.of(queue).waiting, 0)
            replies = pipe.execute()
        now = time.time()
        found = {}
        for i, queue in enumerate(queues):
            counts = counts_from(replies[4 * i : 4 * i + 3])
            head = replies[4 * i + 3]
            stamp = None if head is None else enqueued_at(keys.unpack_element(head).body)
            found[queue] = snapshot_of(counts, None if stamp is None else max(0.0, now - stamp))
        return found
