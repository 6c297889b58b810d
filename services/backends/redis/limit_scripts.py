"""The Lua scripts of limits (``limits``): four on a limit's tag, two on a queue's tag.

A limit keyed ``<key>`` lives under its own hash tag ``L = cv:{lim:<key>}:`` (``limit_tag``),
so a limit shared by jobs of many queues is one slot on a cluster; a script touches one tag
only, like the queue scripts (``scripts``), and the client chains them (ACQUIRE, then PARK on
the queue; RELEASE, then WAKE on each woken job's queue)::

    key                type    content
    -----------------  ------  ----------------------------------------------------------------
    L h                zset    permit holders ``<consumer>|<queue>|<token>`` by expiry (ms,
                               Redis clock); expired ones are dropped by ACQUIRE and RELEASE
    L w                zset    parked jobs waiting for a permit, ``<queue>\\n<job id>``, by the
                               time of their first refusal (ms)
    L r                string  the rate's theoretical arrival time (GCRA, ms)
    L v                zset    starts reserved by refused jobs: ``<queue>\\n<job id>`` by slot
    T pk:<job id>      string  the delayed-set member of a parked job (for WAKE)
    T wk:<job id>      string  a wake-up that came before its job was parked (10 s)

Time is Redis ``TIME``; every key has a TTL or is emptied by use, so idle limits vanish.
"""

from __future__ import annotations

from services.backends.redis import scripts as queue_lua

LIMIT_KEYS: dict[str, tuple[str, ...]] = {
    "ACQUIRE": ("h", "w"),
    "RELEASE": ("h", "w"),
    "RENEW": ("h",),
    "RATE": ("r", "v"),
}
"""Each limit script's ``KEYS``: suffixes of the limit's tag."""

QUEUE_KEYS: dict[str, tuple[str, ...]] = {
    "PARK": ("counts", "running", "dead", "seq", "delayed", "waiting", "bell"),
    "WAKE": ("delayed", "waiting", "bell", "cancelled"),
}
"""Each queue script's ``KEYS``: fields of ``keys.QueueKeys``."""

_NOW = r"""
local L = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: tag, permits, member, lease_ms, waiter, longest park ms
# -> {1, 0} held | {0, park ms}: refused and queued as a waiter (in order of first refusal).
# The first ``permits`` waiters park until the first holder's expiry (a holder that died
# lapses then), at most the longest park; those further back park longer (up to 12 times),
# so a long line does not retry in a herd: a release wakes them one by one anyway.
ACQUIRE = (
    _NOW
    + r"""
local permits, member, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local waiter, longest = ARGV[5], tonumber(ARGV[6])
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], member) or redis.call('ZCARD', KEYS[1]) < permits then
  redis.call('ZADD', KEYS[1], now + lease, member)
  redis.call('ZREM', KEYS[2], waiter)
  return {1, 0}
end
redis.call('ZADD', KEYS[2], 'NX', now, waiter)
redis.call('PEXPIRE', KEYS[2], 86400000)
local ahead = redis.call('ZRANK', KEYS[2], waiter)
local delay = longest * math.min(12, 1 + math.floor(ahead / (4 * permits)))
if ahead < permits then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  delay = math.min(delay, tonumber(first[2]) - now + 20)
end
return {0, math.max(0, delay)}
"""
)

# ARGV: tag, permits, member... -> the waiters to wake (one per permit freed, while free)
RELEASE = (
    _NOW
    + r"""
local permits, freed = tonumber(ARGV[2]), 0
for i = 3, #ARGV do freed = freed + redis.call('ZREM', KEYS[1], ARGV[i]) end
freed = freed + redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local room = permits - redis.call('ZCARD', KEYS[1])
local out = {}
if math.min(freed, room) > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], math.min(freed, room))
  for i = 1, #popped, 2 do out[#out + 1] = popped[i] end
end
return out
"""
)

# ARGV: tag, lease_ms, member... -> the members no longer held (lapsed, or released since)
RENEW = (
    _NOW
    + r"""
local expiry, lost = now_ms() + tonumber(ARGV[2]), {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
)

# ARGV: tag, interval_ms, waiter -> 0 (start now) | ms until the waiter's slot
# GCRA without burst: a start is allowed once the theoretical arrival time (TAT) has come;
# a refused start takes the TAT's slot for this waiter (``L v``) and moves the TAT on, so
# refused jobs are spread over the next slots and each is refused once, not at every slot.
# A job back at or after its slot starts, however late (a slot lapsing when its consumers
# are busy would make them later still, and waste the slot).
RATE = (
    _NOW
    + r"""
local interval, waiter = tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local slot = redis.call('ZSCORE', KEYS[2], waiter)
if slot then
  slot = tonumber(slot)
  if slot > now then return math.max(1, math.ceil(slot - now)) end
  redis.call('ZREM', KEYS[2], waiter)
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 60000)
if tat <= now then return 0 end
redis.call('ZADD', KEYS[2], tat, waiter)
redis.call('PEXPIRE', KEYS[2], math.ceil(tat - now) + 3600000)
return math.max(1, math.ceil(tat - now))
"""
)


# ARGV: tag, consumer, token, job id, delay_ms -> 1 parked | 0 (not held: fenced or settled)
# Like RETRY without an attempt: the in-flight record goes to the delayed set (or, when a
# wake-up came first, to the front of the queue); attempts, status records and counters of
# outcomes are untouched.
PARK = r"""
local c, tok, id, delay = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local st, e = take(c, tok, id)
if st ~= 'ok' then counts_save() return 0 end
if redis.call('DEL', T .. 'wk:' .. id) == 1 then delay = 0 end
if delay <= 0 then
  redis.call('LPUSH', K.waiting, e)
  mark(e, QUEUED)
  ring()
else
  local m = redis.call('INCR', K.seq) .. ':' .. e
  redis.call('ZADD', K.delayed, now_ms() + delay, m)
  mark(e, SCHEDULED)
  redis.call('SET', T .. 'pk:' .. id, m, 'PX', delay + 60000)
end
counts_save()
return 1
"""

# ARGV: tag, job id -> 1 woken (moved to the front of its queue) | 0 (not parked: a wake-up
# token is left for a PARK that may be on its way)
WAKE = r"""
local id = ARGV[2]
local pk = T .. 'pk:' .. id
local m = redis.call('GET', pk)
if m and redis.call('ZREM', K.delayed, m) == 1 then
  redis.call('DEL', pk)
  local e = string.sub(m, (string.find(m, ':', 1, true) or 0) + 1)
  if bad(e) or redis.call('HEXISTS', K.cancelled, id_key(e)) == 1 then
    redis.call('ZADD', K.delayed, 0, m)  -- FETCH deals with it as it would have
    return 0
  end
  redis.call('LPUSH', K.waiting, e)
  mark(e, QUEUED)
  ring()
  return 1
end
redis.call('SET', T .. 'wk:' .. id, '1', 'PX', 10000)
return 0
"""


def source(name: str) -> str:
    """The full Lua of the script ``name`` (a queue script gets the queue scripts' helpers)."""
    body: str = globals()[name]
    if name in QUEUE_KEYS:
        fields = ", ".join(f"{f} = KEYS[{i}]" for i, f in enumerate(QUEUE_KEYS[name], 1))
        return f"local K = {{{fields}}}\n" + queue_lua._COMMON + body
    return body
