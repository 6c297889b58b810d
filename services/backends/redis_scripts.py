"""The Lua scripts of the Redis backend: every state change is one atomic script.

Each script runs in one round trip and moves a job between states in one step, so a crash of
the client, or of Redis between two commands, cannot lose or duplicate a job. Scripts take the
key prefix as ``ARGV[1]`` and build the other key names themselves (see ``redis_keys`` for the
layout); the backend targets standalone Redis (and replicas of it), not Redis Cluster.

Time comes from Redis (``TIME``), never from the client, so leases and delays do not depend on
the clocks of the hosts. Since Redis 5 scripts replicate their effects, so calling ``TIME``
before writing is allowed on 6.2 and later.
"""

from __future__ import annotations

# Helpers shared by every script. An element is: one byte of redeliveries, one byte of id length
# (0 = the id is 32 hex digits stored as 16 raw bytes), the id, then the body.
_COMMON = r"""
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function id_key(e)
  local n = string.byte(e, 2)
  if n == 0 then return string.sub(e, 3, 18) end
  return string.sub(e, 3, 2 + n)
end
local function id_text(e)
  local k = id_key(e)
  if string.byte(e, 2) ~= 0 then return k end
  return (string.gsub(k, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function ring(q)
  local b = P .. 'b:' .. q
  if redis.call('LLEN', b) == 0 then redis.call('RPUSH', b, '1') end
end
local function split(v)
  local n = string.match(v, '^(%d+):')
  local s = #n + 2
  return string.sub(v, s, s + tonumber(n) - 1), string.sub(v, s + tonumber(n))
end
local function attempts_of(rec)
  if not rec then return 0 end
  return tonumber(string.match(rec, '^%a+\n(%d+)\n')) or 0
end
local function finish(id, state, att, err, res, ttl)
  local k = P .. 'j:' .. id
  redis.call('DEL', k)
  redis.call('RPUSH', k, state .. '\n' .. att .. '\n' .. #err .. '\n' .. err .. res)
  redis.call('PEXPIRE', k, ttl)
end
local function bury(q, e, reason, now, dl_max, dl_age)
  local k = P .. 'dl:' .. q
  local seq = redis.call('INCR', P .. 'seq')
  -- Zero-padded, so letters of the same millisecond sort in the order they died.
  redis.call('ZADD', k, now, string.format('%015d', seq) .. '\n' .. #reason .. '\n' .. reason .. e)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - dl_age)
  local n = redis.call('ZCARD', k)
  if n > dl_max then redis.call('ZREMRANGEBYRANK', k, 0, n - dl_max - 1) end
end
local function take(c, tok)
  local k = P .. 'i:' .. c
  local v = redis.call('HGET', k, tok)
  if not v then return nil end
  redis.call('HDEL', k, tok)
  local q, e = split(v)
  redis.call('HDEL', P .. 'running', id_key(e))
  return q, e
end
local function fenced(n)
  if n > 0 then redis.call('HINCRBY', P .. 'stats', 'fenced', n) end
end
"""

# ARGV: prefix, queue, max_depth (0: unbounded), delay_ms, element...
PUT = (
    _COMMON
    + r"""
local q, max_depth, delay = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #ARGV - 4
if delay > 0 then
  local due = now_ms() + delay
  local seq = redis.call('INCRBY', P .. 'seq', n) - n
  local k = P .. 'd:' .. q
  for i = 1, n do redis.call('ZADD', k, due, (seq + i) .. ':' .. ARGV[4 + i]) end
  ring(q)
  return n
end
local k = P .. 'q:' .. q
if max_depth > 0 and redis.call('LLEN', k) + n > max_depth then return -1 end
for i = 5, #ARGV, 1000 do redis.call('RPUSH', k, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
ring(q)
return n
"""
)

# ARGV: prefix, consumer, max_count, lease_ms, queue... -> {now_ms, next_due_ms|-1, {i, tok, e}...}
FETCH = (
    _COMMON
    + r"""
local c, want, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now, next_due, got, out = now_ms(), -1, 0, {}
for qi = 5, #ARGV do
  local q = ARGV[qi]
  local qk, dk = P .. 'q:' .. q, P .. 'd:' .. q
  local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 100)
  if #due > 0 then
    local els = {}
    for i, m in ipairs(due) do els[i] = string.sub(m, string.find(m, ':', 1, true) + 1) end
    redis.call('RPUSH', qk, unpack(els))
    redis.call('ZREM', dk, unpack(due))
  end
  local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
  local items = got < want and redis.call('LPOP', qk, want - got)
  if items then
    local seq = redis.call('INCRBY', P .. 'seq', #items) - #items
    local held, running, tag = {}, {}, #q .. ':' .. q
    for i, e in ipairs(items) do
      held[2 * i - 1], held[2 * i] = seq + i, tag .. e
      running[2 * i - 1], running[2 * i] = id_key(e), c
      out[#out + 1] = qi - 4
      out[#out + 1] = seq + i
      out[#out + 1] = e
    end
    redis.call('HSET', P .. 'i:' .. c, unpack(held))
    redis.call('HSET', P .. 'running', unpack(running))
    got = got + #items
  end
  -- Wake another waiting consumer while work is left (a bell wakes only one).
  if redis.call('LLEN', qk) > 0 then ring(q) end
end
if got > 0 then redis.call('ZADD', P .. 'leases', now + lease, c) end
return {now, next_due, out}
"""
)

# ARGV: prefix, ttl_ms, then (consumer, token, job id, result flag+bytes)... -> fenced count
ACK = (
    _COMMON
    + r"""
local ttl, bad = tonumber(ARGV[2]), 0
for i = 3, #ARGV, 4 do
  local q = take(ARGV[i], ARGV[i + 1])
  if not q then
    bad = bad + 1
  elseif ttl > 0 then
    local id = ARGV[i + 2]
    local fk = P .. 'f:' .. id
    local att = attempts_of(redis.call('GET', fk)) + 1
    redis.call('DEL', fk)
    finish(id, 'done', att, '', ARGV[i + 3], ttl)
  end
end
fenced(bad)
return bad
"""
)

# ARGV: prefix, ttl_ms, consumer, token, job id, queue, delay_ms, element, error -> 1 | 0
RETRY = (
    _COMMON
    + r"""
local ttl, id, q, delay, e, err = tonumber(ARGV[2]), ARGV[5], ARGV[6], tonumber(ARGV[7]),
  ARGV[8], ARGV[9]
if not take(ARGV[3], ARGV[4]) then fenced(1) return 0 end
if delay > 0 then
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'd:' .. q, now_ms() + delay, seq .. ':' .. e)
else
  redis.call('RPUSH', P .. 'q:' .. q, e)
end
ring(q)
if ttl > 0 then
  local fk = P .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('SET', fk, 'failed\n' .. att .. '\n' .. #err .. '\n' .. err .. '0', 'PX', ttl)
end
return 1
"""
)

# ARGV: prefix, then (consumer, token)... in reverse delivery order -> fenced count
NACK = (
    _COMMON
    + r"""
local bad = 0
for i = 2, #ARGV, 2 do
  local q, e = take(ARGV[i], ARGV[i + 1])
  if q then
    redis.call('LPUSH', P .. 'q:' .. q, e)
    ring(q)
  else
    bad = bad + 1
  end
end
fenced(bad)
return bad
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, consumer, token, job id, reason -> 1 | 0
DEAD = (
    _COMMON
    + r"""
local ttl, id, reason = tonumber(ARGV[2]), ARGV[7], ARGV[8]
local q, e = take(ARGV[5], ARGV[6])
if not q then fenced(1) return 0 end
bury(q, e, reason, now_ms(), tonumber(ARGV[3]), tonumber(ARGV[4]))
if ttl > 0 then
  local fk = P .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('DEL', fk)
  finish(id, 'dead', att, reason, '0', ttl)
end
return 1
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, max_redeliveries, consumer|'', reason,
#       '1' + suspect id keys... (only those count as crashes) | '0' (all count)
# With a consumer: release it. Without: recover the consumers whose lease expired.
HANDBACK = (
    _COMMON
    + r"""
local ttl, dl_max, dl_age, max_rd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
local now = now_ms()
local suspects = nil
if ARGV[8] == '1' then
  suspects = {}
  for i = 9, #ARGV do suspects[ARGV[i]] = true end
end
local function hand_back(c, reason)
  local k = P .. 'i:' .. c
  local held = redis.call('HGETALL', k)
  for i = 2, #held, 2 do
    local q, e = split(held[i])
    local key = id_key(e)
    redis.call('HDEL', P .. 'running', key)
    local deaths = string.byte(e, 1) + 1
    if suspects and not suspects[key] then
      -- Merely prefetched, never started: back uncounted.
      redis.call('LPUSH', P .. 'q:' .. q, e)
      ring(q)
    elseif deaths >= max_rd then
      local why = reason .. ', ' .. deaths .. ' times'
      bury(q, e, why, now, dl_max, dl_age)
      redis.call('HINCRBY', P .. 'stats', 'quarantined', 1)
      if ttl > 0 then
        local id = id_text(e)
        local att = attempts_of(redis.call('GET', P .. 'f:' .. id)) + 1
        redis.call('DEL', P .. 'f:' .. id)
        finish(id, 'dead', att, why, '0', ttl)
      end
    else
      redis.call('LPUSH', P .. 'q:' .. q, string.char(math.min(deaths, 255)) .. string.sub(e, 2))
      ring(q)
    end
  end
  redis.call('DEL', k)
  redis.call('ZREM', P .. 'leases', c)
  return #held / 2
end
if ARGV[6] ~= '' then return hand_back(ARGV[6], ARGV[7]) end
local total = 0
for _, c in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 20)) do
  total = total + hand_back(c, ARGV[7])
end
if total > 0 then redis.call('HINCRBY', P .. 'stats', 'recovered', total) end
return total
"""
)

# ARGV: prefix, consumer, lease_ms
HEARTBEAT = (
    _COMMON
    + r"""
redis.call('ZADD', P .. 'leases', now_ms() + tonumber(ARGV[3]), ARGV[2])
return 1
"""
)

# ARGV: prefix, queue, dead-letter member... (none: all of them) -> how many were requeued
REQUEUE_DEAD = (
    _COMMON
    + r"""
local q = ARGV[2]
local k = P .. 'dl:' .. q
local members = {}
if #ARGV == 2 then members = redis.call('ZRANGE', k, 0, -1) else
  for i = 3, #ARGV do members[#members + 1] = ARGV[i] end
end
local n = 0
for _, m in ipairs(members) do
  if redis.call('ZREM', k, m) == 1 then
    local a = string.find(m, '\n', 1, true)
    local b = string.find(m, '\n', a + 1, true)
    local e = string.sub(m, b + 1 + tonumber(string.sub(m, a + 1, b - 1)))
    -- A requeued job is a fresh attempt: its crash count starts again.
    redis.call('RPUSH', P .. 'q:' .. q, '\0' .. string.sub(e, 2))
    n = n + 1
  end
end
if n > 0 then ring(q) end
return n
"""
)
