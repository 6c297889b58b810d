"""The Lua scripts of the Redis backend: every state change is one atomic script.

Each script runs in one round trip and moves a job between states in one step, so a crash of
the client, or of Redis between two commands, cannot lose or duplicate a job. Scripts take the
key prefix as ``ARGV[1]`` and build the other key names themselves (see ``keys`` for the
layout); the backend targets standalone Redis (and replicas of it), not Redis Cluster.

Conventions every script keeps:

* **Total.** Redis does not roll back a script that raises after a write, so a script never
  raises once it has written: input it did not write itself (queue elements, delayed members,
  in-flight records, dead letters) is checked by ``bad`` / ``split`` before use, and a malformed
  one is dead-lettered on its own, with the reason, taking no other job with it.
* **Bounded.** A script call handles at most the jobs the client gives it, and the client caps
  that (``queue.CAPS``) and sends several calls in one pipeline instead, so no call holds
  Redis for long (Redis runs nothing else meanwhile).
* **Counted.** Scripts keep ``cv:n:<queue>`` (in flight, done, dead) with one ``HINCRBY`` per
  queue and batch, so ``counts`` is one cheap read.

Time comes from Redis (``TIME``), never from the client, so leases and delays do not depend on
the clocks of the hosts. Since Redis 5 scripts replicate their effects, so calling ``TIME``
before writing is allowed on 6.2 and later.
"""

from __future__ import annotations

# Helpers shared by every script. An element is: one byte of redeliveries, one byte of id length
# (0 = the id is 32 hex digits stored as 16 raw bytes), the id, then the body.
_COMMON = r"""
local P = ARGV[1]
local LIM = {ttl = 0, dl_max = 10000, dl_age = 7 * 86400000}
local HEX16 = string.rep('%02x', 16)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c, k, lo, hi = string.byte(s, i), 0, 0x80, 0xBF
    if c < 0x80 then k = 0
    elseif c >= 0xC2 and c <= 0xDF then k = 1
    elseif c >= 0xE0 and c <= 0xEF then
      k = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      k = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else return false end
    if i + k > n then return false end
    for j = i + 1, i + k do
      local d = string.byte(s, j)
      if d < lo or d > hi then return false end
      lo, hi = 0x80, 0xBF
    end
    i = i + k + 1
  end
  return true
end
-- Why an element is malformed, or nil when it is well formed (checked before any header read).
local function bad(e)
  local len = #e
  if len == 0 then return 'malformed element: empty, no 2-byte header' end
  if len == 1 then return 'malformed element: 1 byte, shorter than its 2-byte header' end
  local n = string.byte(e, 2)
  if n == 0 then
    if len < 18 then
      return 'malformed element: ' .. len .. ' bytes, shorter than the 18-byte header of a hex id'
    end
    return nil
  end
  if len < 2 + n then
    return 'malformed element: id length ' .. n .. ' runs past its end (' .. len .. ' bytes)'
  end
  local id = string.sub(e, 3, 2 + n)
  if string.find(id, '[\128-\255]') and not utf8_ok(id) then
    return 'malformed element: job id is not UTF-8'
  end
  return nil
end
-- The helpers below take well-formed elements only.
local function id_key(e)
  local n = string.byte(e, 2)
  if n == 0 then return string.sub(e, 3, 18) end
  return string.sub(e, 3, 2 + n)
end
local function id_text(e)
  if string.byte(e, 2) ~= 0 then return id_key(e) end
  return string.format(HEX16, string.byte(e, 3, 18))
end
-- Waiting markers (see keys.py): hash cv:w:<first 3 hex digits of the fingerprint>, field
-- fingerprint bytes 2-8, value 2 * (queue index + 1) + QUEUED or SCHEDULED. One HSET/HDEL each:
-- that is what replicates.
local QUEUED, SCHEDULED = 1, 2
-- The queue's index in cv:queues, registered on first use (once per queue and call).
local QI = {}
local function qindex(q)
  local i = QI[q]
  if i then return i end
  local k = P .. 'queues'
  i = redis.call('HGET', k, q)
  if not i then
    i = redis.call('HLEN', k)
    redis.call('HSET', k, q, i)
  end
  i = tonumber(i)
  QI[q] = i
  return i
end
local function mark_value(state, q)
  return 2 * (qindex(q) + 1) + state
end
local function mark_at(e)
  if string.byte(e, 2) == 0 then
    local a, b = string.byte(e, 3, 4)
    return P .. 'w:' .. string.format('%03x', a * 16 + math.floor(b / 16)), string.sub(e, 4, 10)
  end
  local h = redis.sha1hex(id_key(e))
  local f = string.gsub(string.sub(h, 3, 16), '..',
    function(x) return string.char(tonumber(x, 16)) end)
  return P .. 'w:' .. string.sub(h, 1, 3), f
end
local function mark(e, state, q)
  local k, f = mark_at(e)
  redis.call('HSET', k, f, mark_value(state, q))
end
local function unmark(e)
  local k, f = mark_at(e)
  redis.call('HDEL', k, f)
end
-- Counters of cv:n:<queue>, summed per call and written once per queue and field.
local N = {}
local function count(q, field, by)
  local t = N[q]
  if not t then t = {}; N[q] = t end
  t[field] = (t[field] or 0) + by
end
local function counts_save()
  for q, t in pairs(N) do
    for field, by in pairs(t) do
      if by ~= 0 then redis.call('HINCRBY', P .. 'n:' .. q, field, by) end
    end
  end
end
local function ring(q)
  local b = P .. 'b:' .. q
  if redis.call('LLEN', b) == 0 then redis.call('RPUSH', b, '1') end
end
-- '<len>:<queue><element>' -> queue, element; nil when the record is not of that shape.
local function split(v)
  local n = string.match(v, '^(%d+):')
  if not n then return nil end
  local s = #n + 2
  local len = tonumber(n)
  if s + len - 1 > #v then return nil end
  return string.sub(v, s, s + len - 1), string.sub(v, s + len)
end
local function attempts_of(rec)
  if not rec then return 0 end
  return tonumber(string.match(rec, '^%a+\n(%d+)\n')) or 0
end
local function finish(id, state, att, err, res)
  local k = P .. 'j:' .. id
  redis.call('DEL', k)
  redis.call('RPUSH', k, state .. '\n' .. att .. '\n' .. #err .. '\n' .. err .. res)
  redis.call('PEXPIRE', k, LIM.ttl)
end
local function bury(q, e, reason, now)
  local k = P .. 'dl:' .. q
  local seq = redis.call('INCR', P .. 'seq')
  -- Zero-padded, so letters of the same millisecond sort in the order they died.
  redis.call('ZADD', k, now, string.format('%015d', seq) .. '\n' .. #reason .. '\n' .. reason .. e)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - LIM.dl_age)
  local n = redis.call('ZCARD', k)
  if n > LIM.dl_max then redis.call('ZREMRANGEBYRANK', k, 0, n - LIM.dl_max - 1) end
  count(q, 'dead', 1)
end
-- Settle a job as dead: its status record (with the attempts so far) replaces any retry record.
local function dead_record(id, why)
  if LIM.ttl <= 0 then return end
  local fk = P .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('DEL', fk)
  finish(id, 'dead', att, why, '0')
end
-- Take one in-flight record of consumer c. Returns 'ok', queue, element; 'gone' (not held);
-- or 'bad' (it was malformed and is dead-lettered now).
local function take(c, tok)
  local k = P .. 'i:' .. c
  local v = redis.call('HGET', k, tok)
  if not v then return 'gone' end
  redis.call('HDEL', k, tok)
  local q, e = split(v)
  if not q then
    bury('', v, 'malformed in-flight record', now_ms())
    return 'bad'
  end
  -- FETCH records well-formed elements only, so a malformed one was written raw and was never
  -- counted in flight.
  local why = bad(e)
  if why then
    bury(q, e, why, now_ms())
    return 'bad'
  end
  count(q, 'inflight', -1)
  redis.call('HDEL', P .. 'running', id_key(e))
  return 'ok', q, e
end
-- A settlement whose token is gone: fenced when it was taken from c, else a repeat.
local function fenced(c, tok)
  if redis.call('SISMEMBER', P .. 'h:' .. c, tok) == 1 then
    redis.call('HINCRBY', P .. 'stats', 'fenced', 1)
    return true
  end
  return false
end
local function limits(at)
  LIM.ttl, LIM.dl_max, LIM.dl_age = tonumber(ARGV[at]), tonumber(ARGV[at + 1]),
    tonumber(ARGV[at + 2])
end
"""

# ARGV: prefix, queue, max_depth (0: unbounded), delay_ms, fresh ('1': ids new, '0'), element...
# -> a string of one flag per element ('1' stored, '0' id present), or -1 (queue full)
# Fresh ids (generated by the caller just now, never put before) cannot be running or finished,
# so the fast mode checks the waiting marker only, claiming it with HSETNX (which also catches
# a repeat within the call). It writes as it checks, so it runs only when the queue has room
# for every element; otherwise the full checks count exactly what would be stored.
PUT = (
    _COMMON
    + r"""
local q, max_depth, delay = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local fresh = ARGV[5] == '1'
for i = 6, #ARGV do
  local why = bad(ARGV[i])
  if why then return redis.error_reply('PUT element ' .. (i - 5) .. ': ' .. why) end
end
local state = mark_value(delay > 0 and SCHEDULED or QUEUED, q)
local xk = P .. 'x:' .. q
if fresh and delay <= 0 and max_depth > 0
    and redis.call('LLEN', P .. 'q:' .. q) + #ARGV - 5 > max_depth then
  fresh = false
end
local flags, add, marks, seen = {}, {}, {}, {}
for i = 6, #ARGV do
  local e = ARGV[i]
  local k, f = mark_at(e)
  if fresh then
    if redis.call('HSETNX', k, f, state) == 1 then
      flags[#flags + 1] = '1'
      add[#add + 1] = e
    else
      flags[#flags + 1] = '0'
    end
  else
    local id = id_text(e)
    if seen[k .. f] or redis.call('HEXISTS', k, f) == 1
        or redis.call('HEXISTS', P .. 'running', id_key(e)) == 1
        or redis.call('EXISTS', P .. 'j:' .. id, P .. 'f:' .. id) > 0
        or redis.call('HEXISTS', xk, id_key(e)) == 1 then
      flags[#flags + 1] = '0'
    else
      flags[#flags + 1] = '1'
      add[#add + 1] = e
      marks[#marks + 1] = {k, f}
      seen[k .. f] = true
    end
  end
end
local n = #add
if n == 0 then return table.concat(flags) end
if delay > 0 then
  local due = now_ms() + delay
  local seq = redis.call('INCRBY', P .. 'seq', n) - n
  local k = P .. 'd:' .. q
  for i = 1, n do redis.call('ZADD', k, due, (seq + i) .. ':' .. add[i]) end
else
  local k = P .. 'q:' .. q
  -- Checked before any write: a full queue takes nothing (the fast mode checked it above).
  if max_depth > 0 and redis.call('LLEN', k) + n > max_depth then return -1 end
  redis.call('RPUSH', k, unpack(add))
end
for _, m in ipairs(marks) do redis.call('HSET', m[1], m[2], state) end
ring(q)
return table.concat(flags)
"""
)

# ARGV: prefix, consumer, max_count, lease_ms, dl_max, dl_age_ms, queue...
# -> {now_ms, next_due_ms|-1, lease 1 (renewed, existed) | 0 (created) | -1 (not renewed),
#     handed-back count, {i, tok, e}...}
FETCH = (
    _COMMON
    + r"""
local c, want, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
LIM.dl_max, LIM.dl_age = tonumber(ARGV[5]), tonumber(ARGV[6])
local now, next_due, got, out = now_ms(), -1, 0, {}
for qi = 7, #ARGV do
  local q = ARGV[qi]
  local qk, dk, xk = P .. 'q:' .. q, P .. 'd:' .. q, P .. 'x:' .. q
  -- Cancelled jobs still here are dropped as they are met (see keys.py, "Cancelling").
  local tombs = redis.call('EXISTS', xk) == 1
  local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 100)
  if #due > 0 then
    local els = {}
    for _, m in ipairs(due) do
      local at = string.find(m, ':', 1, true)
      local e = at and string.sub(m, at + 1) or m
      local ok = not bad(e)
      if ok and tombs and redis.call('HDEL', xk, id_key(e)) == 1 then
        count(q, 'xd', -1)
      else
        els[#els + 1] = e
        if ok then mark(e, QUEUED, q) end
      end
    end
    if #els > 0 then redis.call('RPUSH', qk, unpack(els)) end
    redis.call('ZREM', dk, unpack(due))
  end
  local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
  local items = got < want and redis.call('LPOP', qk, want - got)
  if items then
    local seq = redis.call('INCRBY', P .. 'seq', #items) - #items
    local held, running, tag, n = {}, {}, #q .. ':' .. q, 0
    for i, e in ipairs(items) do
      local why = bad(e)
      if why then
        bury(q, e, why, now)
      elseif tombs and redis.call('HDEL', xk, id_key(e)) == 1 then
        count(q, 'xq', -1)
      else
        n = n + 1
        held[2 * n - 1], held[2 * n] = seq + i, tag .. e
        running[2 * n - 1], running[2 * n] = id_key(e), c
        unmark(e)
        out[#out + 1] = qi - 6
        out[#out + 1] = seq + i
        out[#out + 1] = e
      end
    end
    if n > 0 then
      redis.call('HSET', P .. 'i:' .. c, unpack(held))
      redis.call('HSET', P .. 'running', unpack(running))
      count(q, 'inflight', n)
    end
    got = got + #items
  end
  -- Wake another waiting consumer while work is left (a bell wakes only one).
  if redis.call('LLEN', qk) > 0 then ring(q) end
end
counts_save()
local renewed = -1
if #out > 0 then renewed = redis.call('ZADD', P .. 'leases', now + lease, c) == 0 and 1 or 0 end
return {now, next_due, renewed, redis.call('SCARD', P .. 'h:' .. c), out}
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, then (consumer, token, job id, result flag+bytes)...
# -> fenced count
ACK = (
    _COMMON
    + r"""
limits(2)
local rejected = 0
for i = 5, #ARGV, 4 do
  local st, q = take(ARGV[i], ARGV[i + 1])
  if st == 'gone' then
    if fenced(ARGV[i], ARGV[i + 1]) then rejected = rejected + 1 end
  elseif st == 'ok' then
    count(q, 'done', 1)
    if LIM.ttl > 0 then
      local id = ARGV[i + 2]
      local fk = P .. 'f:' .. id
      local att = attempts_of(redis.call('GET', fk)) + 1
      redis.call('DEL', fk)
      finish(id, 'done', att, '', ARGV[i + 3])
    end
  end
end
counts_save()
return rejected
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, consumer, token, job id, queue, delay_ms, element,
#       error -> 1 (done, or done before) | 0 (fenced)
RETRY = (
    _COMMON
    + r"""
limits(2)
local id, q, delay, e, err = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
if bad(e) then return redis.error_reply('RETRY: ' .. bad(e)) end
local st = take(ARGV[5], ARGV[6])
if st == 'gone' then return fenced(ARGV[5], ARGV[6]) and 0 or 1 end
if st == 'bad' then counts_save() return 1 end
if delay > 0 then
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'd:' .. q, now_ms() + delay, seq .. ':' .. e)
  mark(e, SCHEDULED, q)
else
  redis.call('RPUSH', P .. 'q:' .. q, e)
  mark(e, QUEUED, q)
end
ring(q)
counts_save()
if LIM.ttl > 0 then
  local fk = P .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('SET', fk, 'failed\n' .. att .. '\n' .. #err .. '\n' .. err .. '0', 'PX', LIM.ttl)
end
return 1
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, then (consumer, token)... in reverse delivery order
# -> how many were handed back
NACK = (
    _COMMON
    + r"""
limits(2)
local n = 0
for i = 5, #ARGV, 2 do
  local st, q, e = take(ARGV[i], ARGV[i + 1])
  if st == 'ok' then
    redis.call('LPUSH', P .. 'q:' .. q, e)
    mark(e, QUEUED, q)
    ring(q)
    n = n + 1
  end
end
counts_save()
return n
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, consumer, token, job id, reason
# -> 1 (done, or done before) | 0 (fenced)
DEAD = (
    _COMMON
    + r"""
limits(2)
local id, reason = ARGV[7], ARGV[8]
local st, q, e = take(ARGV[5], ARGV[6])
if st == 'gone' then return fenced(ARGV[5], ARGV[6]) and 0 or 1 end
if st == 'ok' then
  bury(q, e, reason, now_ms())
  dead_record(id, reason)
end
counts_save()
return 1
"""
)

# ARGV: prefix, ttl_ms, dl_max, dl_age_ms, max_redeliveries, consumer|'', reason, cap,
#       '1' + suspect id keys... (only those count as crashes) | '0' (all count)
#       | 'p' (all but the tokens in cv:p:<consumer>, its prefetched ones)
# With a consumer: reclaim its jobs. Without: recover one consumer whose lease expired.
# Takes at most cap records -> {jobs handed back or quarantined, records or expired consumers
# left} (malformed records are dead-lettered and not counted)
HAND_BACK = (
    _COMMON
    + r"""
limits(2)
local max_rd, c, reason, cap = tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8])
local now = now_ms()
if c == '' then
  local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 1)
  if #expired == 0 then return {0, 0} end
  c = expired[1]
end
local suspects, prefetched = nil, nil
if ARGV[9] == '1' then
  suspects = {}
  for i = 10, #ARGV do suspects[ARGV[i]] = true end
elseif ARGV[9] == 'p' then
  prefetched = {}
  for _, t in ipairs(redis.call('SMEMBERS', P .. 'p:' .. c)) do prefetched[t] = true end
end
local k = P .. 'i:' .. c
local held = redis.call('HGETALL', k)
local total = #held / 2
local n = math.min(total, cap)
local toks, back = {}, 0
for j = 1, n do
  local tok, v = held[2 * j - 1], held[2 * j]
  toks[j] = tok
  local q, e = split(v)
  local why = q and bad(e)
  if not q then
    bury('', v, 'malformed in-flight record', now)
  elseif why then
    bury(q, e, why, now)
  else
    back = back + 1
    count(q, 'inflight', -1)
    local key = id_key(e)
    redis.call('HDEL', P .. 'running', key)
    local deaths = string.byte(e, 1) + 1
    if (suspects and not suspects[key]) or (prefetched and prefetched[tok]) then
      -- Merely prefetched, never started: back uncounted.
      redis.call('LPUSH', P .. 'q:' .. q, e)
      mark(e, QUEUED, q)
      ring(q)
    elseif deaths >= max_rd then
      local why2 = reason .. ', ' .. deaths .. ' times'
      bury(q, e, why2, now)
      redis.call('HINCRBY', P .. 'stats', 'quarantined', 1)
      dead_record(id_text(e), why2)
    else
      local back = string.char(math.min(deaths, 255)) .. string.sub(e, 2)
      redis.call('LPUSH', P .. 'q:' .. q, back)
      mark(back, QUEUED, q)
      ring(q)
    end
  end
end
if n > 0 then
  redis.call('HDEL', k, unpack(toks))
  -- Remember what was taken: a late settlement of these is fenced, not a repeat.
  redis.call('SADD', P .. 'h:' .. c, unpack(toks))
  redis.call('EXPIRE', P .. 'h:' .. c, 86400)
  if ARGV[6] == '' and back > 0 then redis.call('HINCRBY', P .. 'stats', 'recovered', back) end
end
counts_save()
local left = total - n
if left == 0 then
  redis.call('ZREM', P .. 'leases', c)
  redis.call('DEL', P .. 'p:' .. c)
  if ARGV[6] == '' then
    left = #redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 1)
  end
end
return {back, left}
"""
)

# ARGV: prefix, consumer, lease_ms, prefetched token...
# -> {lease 1 (existed) | 0 (created), handed-back count, marker epoch | nil}
HEARTBEAT = (
    _COMMON
    + r"""
local c, lease = ARGV[2], tonumber(ARGV[3])
local existed = redis.call('ZADD', P .. 'leases', now_ms() + lease, c) == 0
local pk = P .. 'p:' .. c
redis.call('DEL', pk)
if #ARGV > 3 then
  redis.call('SADD', pk, unpack(ARGV, 4))
  redis.call('PEXPIRE', pk, lease * 10)
end
return {existed and 1 or 0, redis.call('SCARD', P .. 'h:' .. c), redis.call('GET', P .. 'marker')}
"""
)

# ARGV: prefix, consumer, lease_ms, token...
# -> {lease 1 (existed, renewed) | 0 (gone), handed-back count, {1 | 0 per token: still held}}
CONFIRM = (
    _COMMON
    + r"""
local c, lease = ARGV[2], tonumber(ARGV[3])
local existed = redis.call('ZSCORE', P .. 'leases', c)
if existed then redis.call('ZADD', P .. 'leases', now_ms() + lease, c) end
local k, flags = P .. 'i:' .. c, {}
for i = 4, #ARGV do flags[#flags + 1] = redis.call('HEXISTS', k, ARGV[i]) end
return {existed and 1 or 0, redis.call('SCARD', P .. 'h:' .. c), flags}
"""
)

# ARGV: prefix, queue, dead-letter member... -> how many were requeued
# A member that does not parse, or whose element is malformed, stays dead (it would only die
# again); the others go back as fresh attempts.
REQUEUE_DEAD = (
    _COMMON
    + r"""
local q = ARGV[2]
local k = P .. 'dl:' .. q
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  local a = string.find(m, '\n', 1, true)
  local b = a and string.find(m, '\n', a + 1, true)
  local len = b and tonumber(string.sub(m, a + 1, b - 1))
  local e = len and string.sub(m, b + 1 + len)
  if e and not bad(e) and redis.call('ZREM', k, m) == 1 then
    -- A requeued job is a fresh attempt: its crash count starts again.
    local fresh = '\0' .. string.sub(e, 2)
    redis.call('RPUSH', P .. 'q:' .. q, fresh)
    mark(fresh, QUEUED, q)
    n = n + 1
  end
end
if n > 0 then ring(q) end
return n
"""
)

# ARGV: prefix, ttl_ms, job id, id key, marker bucket, marker field, reason
# -> 1 (cancelled) | 0 (not waiting: no marker) | -1 (waiting, but its marker names no queue)
# A waiting job's marker names its queue (keys.py): the job cannot be taken out of the list or
# the delayed set without a scan, so it is tombstoned there, and counted dead now.
CANCEL = (
    _COMMON
    + r"""
LIM.ttl = tonumber(ARGV[2])
local id, key, bucket, field, reason = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local v = tonumber(redis.call('HGET', bucket, field))
if not v then return 0 end
local qi, q = math.floor((v - 1) / 2) - 1, nil
if qi >= 0 then
  local all = redis.call('HGETALL', P .. 'queues')
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) == qi then q = all[i] end
  end
end
if not q then return -1 end
local where = (v % 2 == 1) and 'q' or 'd'
redis.call('HDEL', bucket, field)
redis.call('HSET', P .. 'x:' .. q, key, where)
count(q, 'x' .. where, 1)
count(q, 'dead', 1)
counts_save()
local fk = P .. 'f:' .. id
local att = attempts_of(redis.call('GET', fk))
redis.call('DEL', fk)
if LIM.ttl > 0 then finish(id, 'dead', att, reason, '0') end
return 1
"""
)
