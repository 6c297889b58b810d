"""The Lua scripts of the Redis backend: every state change is one atomic script.

Each script runs in one round trip and moves a job between states in one step, so a crash of
the client, or of Redis between two commands, cannot lose or duplicate a job.

**One queue per script, Cluster-ready.** Each script handles one queue. Its ``KEYS`` are the
queue's fixed keys it touches (``SCRIPT_KEYS``, names of ``keys.QueueKeys``; at least one), so
redis-py's cluster client routes the call to the queue's node and Redis checks the slot. Keys
whose names depend on data only the script sees (the marker bucket of a popped job, ``T j:<id>``,
``T f:<id>``, ``T i:<consumer>`` of a receipt, ``T h:<consumer>``, ``T p:<consumer>``) are built
in Lua from ``ARGV[1]``, the queue's tag ``T = cv:{<queue>}:``: same hash tag, hence the same
slot (BullMQ builds keys from its queue prefix the same way). Redis itself checks less than one
might hope: a plain ``EVAL`` may touch a key of another slot *on the same node* without error
(only a key on another node is refused, or any other slot under a ``#!lua`` shebang, which 6.2
cannot parse). So the guard is ours: ``tests/test_redis_layout.py`` runs every script on two
queues under ``MONITOR`` and checks that each touches only its own queue's tag, never another
queue's, the registry (``cv:{cv}:``) or the fleet (``cv:{fleet}:``).

Conventions every script keeps:

* **Total.** Redis does not roll back a script that raises after a write, so a script never
  raises once it has written: input it did not write itself (queue elements, delayed members,
  in-flight records, dead letters) is checked by ``bad`` before use, and a malformed one is
  dead-lettered on its own, with the reason, taking no other job with it.
* **Bounded.** A script call handles at most the jobs the client gives it, and the client caps
  that (``queue.CAPS``) and sends several calls in one pipeline instead, so no call holds
  Redis for long (Redis runs nothing else meanwhile).
* **Counted.** Scripts keep ``T n`` (in flight, done, dead, fenced, ...) with one ``HINCRBY``
  per field and call, so ``counts`` is one cheap read.

Time comes from Redis (``TIME``), never from the client, so leases and delays do not depend on
the clocks of the hosts. Since Redis 5 scripts replicate their effects, so calling ``TIME``
before writing is allowed on 6.2 and later.
"""

from __future__ import annotations

SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "PUT": ("waiting", "delayed", "bell", "cancelled", "running", "seq"),
    "FETCH": ("waiting", "delayed", "bell", "cancelled", "counts", "dead", "seq", "running",
              "leases"),
    "ACK": ("counts", "running", "dead", "seq"),
    "RETRY": ("counts", "running", "dead", "seq", "waiting", "delayed", "bell"),
    "NACK": ("counts", "running", "dead", "seq", "waiting", "bell"),
    "DEAD": ("counts", "running", "dead", "seq"),
    "HAND_BACK": ("counts", "running", "dead", "seq", "waiting", "bell", "leases"),
    "HEARTBEAT": ("leases", "epoch"),
    "CONFIRM": ("leases",),
    "REQUEUE_DEAD": ("dead", "waiting", "bell"),
    "CANCEL": ("cancelled", "counts"),
}  # fmt: skip
"""Each script's ``KEYS``, in order: fields of ``keys.QueueKeys`` (``keys.declared``)."""


def _script(name: str, body: str) -> str:
    """The script ``name``: ``K.<field>`` bound to its ``KEYS``, the helpers, then ``body``."""
    fields = ", ".join(f"{field} = KEYS[{i}]" for i, field in enumerate(SCRIPT_KEYS[name], 1))
    return f"local K = {{{fields}}}\n{_COMMON}{body}"


# Helpers shared by every script. An element is: one byte of redeliveries, one byte of id length
# (0 = the id is 32 hex digits stored as 16 raw bytes), the id, then the body. ``K`` (set by
# ``_script``) names the declared keys; ``T`` is the queue's tag, for the keys built here.
_COMMON = r"""
local T = ARGV[1]
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
-- Waiting markers (see keys.py): hash T w:<first 3 hex digits of the fingerprint>, field
-- fingerprint bytes 2-8, value QUEUED or SCHEDULED. One HSET/HDEL each: that is what replicates.
local QUEUED, SCHEDULED = 1, 2
local function mark_at(e)
  if string.byte(e, 2) == 0 then
    local a, b = string.byte(e, 3, 4)
    return T .. 'w:' .. string.format('%03x', a * 16 + math.floor(b / 16)), string.sub(e, 4, 10)
  end
  local h = redis.sha1hex(id_key(e))
  local f = string.gsub(string.sub(h, 3, 16), '..',
    function(x) return string.char(tonumber(x, 16)) end)
  return T .. 'w:' .. string.sub(h, 1, 3), f
end
local function mark(e, state)
  local k, f = mark_at(e)
  redis.call('HSET', k, f, state)
end
local function unmark(e)
  local k, f = mark_at(e)
  redis.call('HDEL', k, f)
end
-- Counters of T n, summed per call and written once per field.
local N = {}
local function count(field, by)
  N[field] = (N[field] or 0) + by
end
local function counts_save()
  for field, by in pairs(N) do
    if by ~= 0 then redis.call('HINCRBY', K.counts, field, by) end
  end
  N = {}
end
local function ring()
  if redis.call('LLEN', K.bell) == 0 then redis.call('RPUSH', K.bell, '1') end
end
local function attempts_of(rec)
  if not rec then return 0 end
  return tonumber(string.match(rec, '^%a+\n(%d+)\n')) or 0
end
local function finish(id, state, att, err, res)
  local k = T .. 'j:' .. id
  redis.call('DEL', k)
  redis.call('RPUSH', k, state .. '\n' .. att .. '\n' .. #err .. '\n' .. err .. res)
  redis.call('PEXPIRE', k, LIM.ttl)
end
local function bury(e, reason, now)
  local k = K.dead
  local seq = redis.call('INCR', K.seq)
  -- Zero-padded, so letters of the same millisecond sort in the order they died.
  redis.call('ZADD', k, now, string.format('%015d', seq) .. '\n' .. #reason .. '\n' .. reason .. e)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - LIM.dl_age)
  local n = redis.call('ZCARD', k)
  if n > LIM.dl_max then redis.call('ZREMRANGEBYRANK', k, 0, n - LIM.dl_max - 1) end
  count('dead', 1)
end
-- Settle a job as dead: its status record (with the attempts so far) replaces any retry record.
local function dead_record(id, why)
  if LIM.ttl <= 0 then return end
  local fk = T .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('DEL', fk)
  finish(id, 'dead', att, why, '0')
end
-- Take one in-flight record of consumer c (of job id, when given). Returns 'ok', element;
-- 'gone' (not held, or the token now names another job: a failover lost the FETCH that first
-- issued it, and T seq issued it again); or 'bad' (malformed, dead-lettered now).
local function take(c, tok, id)
  local k = T .. 'i:' .. c
  local e = redis.call('HGET', k, tok)
  if not e then return 'gone' end
  if id and not bad(e) and id_text(e) ~= id then return 'gone' end
  redis.call('HDEL', k, tok)
  -- FETCH records well-formed elements only, so a malformed one was written raw and was never
  -- counted in flight.
  local why = bad(e)
  if why then
    bury(e, why, now_ms())
    return 'bad'
  end
  count('inflight', -1)
  redis.call('HDEL', K.running, id_key(e))
  return 'ok', e
end
-- A settlement whose token is gone: fenced when it was taken from c, else a repeat.
local function fenced(c, tok)
  if redis.call('SISMEMBER', T .. 'h:' .. c, tok) == 1 then
    redis.call('HINCRBY', K.counts, 'fenced', 1)
    return true
  end
  return false
end
local function limits(at)
  LIM.ttl, LIM.dl_max, LIM.dl_age = tonumber(ARGV[at]), tonumber(ARGV[at + 1]),
    tonumber(ARGV[at + 2])
end
"""

COMMON = _COMMON
"""The helpers every queue script starts with, for scripts kept in feature modules (``unique``)."""

# ARGV: tag, max_depth (0: unbounded), delay_ms, fresh ('1': ids new, '0'), element...
# -> a string of one flag per element ('1' stored, '0' id present), or -1 (queue full)
# Fresh ids (generated by the caller just now, never put before) cannot be running or finished,
# so the fast mode checks the waiting marker only, claiming it with HSETNX (which also catches
# a repeat within the call). It writes as it checks, so it runs only when the queue has room
# for every element; otherwise the full checks count exactly what would be stored.
PUT = _script(
    "PUT",
    r"""
local max_depth, delay = tonumber(ARGV[2]), tonumber(ARGV[3])
local fresh = ARGV[4] == '1'
for i = 5, #ARGV do
  local why = bad(ARGV[i])
  if why then return redis.error_reply('PUT element ' .. (i - 4) .. ': ' .. why) end
end
local state = delay > 0 and SCHEDULED or QUEUED
if fresh and delay <= 0 and max_depth > 0
    and redis.call('LLEN', K.waiting) + #ARGV - 4 > max_depth then
  fresh = false
end
local flags, add, marks, seen = {}, {}, {}, {}
for i = 5, #ARGV do
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
        or redis.call('HEXISTS', K.running, id_key(e)) == 1
        or redis.call('EXISTS', T .. 'j:' .. id, T .. 'f:' .. id) > 0
        or redis.call('HEXISTS', K.cancelled, id_key(e)) == 1 then
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
  local seq = redis.call('INCRBY', K.seq, n) - n
  for i = 1, n do redis.call('ZADD', K.delayed, due, (seq + i) .. ':' .. add[i]) end
else
  -- Checked before any write: a full queue takes nothing (the fast mode checked it above).
  if max_depth > 0 and redis.call('LLEN', K.waiting) + n > max_depth then return -1 end
  redis.call('RPUSH', K.waiting, unpack(add))
end
for _, m in ipairs(marks) do redis.call('HSET', m[1], m[2], state) end
ring()
return table.concat(flags)
""",
)

# ARGV: tag, consumer, max_count, lease_ms, dl_max, dl_age_ms
# -> {now_ms, next_due_ms|-1, lease 1 (renewed, existed) | 0 (created) | -1 (not renewed),
#     handed-back count, {tok, e}...}
FETCH = _script(
    "FETCH",
    r"""
local c, want, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
LIM.dl_max, LIM.dl_age = tonumber(ARGV[5]), tonumber(ARGV[6])
local now, next_due, out = now_ms(), -1, {}
local qk, dk, xk = K.waiting, K.delayed, K.cancelled
-- Cancelled jobs still here are dropped as they are met (see keys.py, "Cancelling").
local tombs = redis.call('EXISTS', xk) == 1
-- The earliest delayed job first: most calls find none due, and stop at this one command.
local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 100)
  local els = {}
  for _, m in ipairs(due) do
    local at = string.find(m, ':', 1, true)
    local e = at and string.sub(m, at + 1) or m
    local ok = not bad(e)
    if ok and tombs and redis.call('HDEL', xk, id_key(e)) == 1 then
      count('xd', -1)
    else
      els[#els + 1] = e
      if ok then mark(e, QUEUED) end
    end
  end
  if #els > 0 then redis.call('RPUSH', qk, unpack(els)) end
  redis.call('ZREM', dk, unpack(due))
  first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
end
if first[2] then next_due = tonumber(first[2]) end
local items = redis.call('LPOP', qk, want)
if items then
  local seq = redis.call('INCRBY', K.seq, #items) - #items
  local held, running, n = {}, {}, 0
  for i, e in ipairs(items) do
    local why = bad(e)
    if why then
      bury(e, why, now)
    elseif tombs and redis.call('HDEL', xk, id_key(e)) == 1 then
      count('xq', -1)
    else
      n = n + 1
      held[2 * n - 1], held[2 * n] = seq + i, e
      running[2 * n - 1], running[2 * n] = id_key(e), c
      unmark(e)
      out[#out + 1] = seq + i
      out[#out + 1] = e
    end
  end
  if n > 0 then
    redis.call('HSET', T .. 'i:' .. c, unpack(held))
    redis.call('HSET', K.running, unpack(running))
    count('inflight', n)
  end
end
-- Wake another waiting consumer while work is left (a bell wakes only one).
if redis.call('LLEN', qk) > 0 then ring() end
counts_save()
local renewed = -1
if #out > 0 then renewed = redis.call('ZADD', K.leases, now + lease, c) == 0 and 1 or 0 end
return {now, next_due, renewed, redis.call('SCARD', T .. 'h:' .. c), out}
""",
)

# ARGV: tag, ttl_ms, dl_max, dl_age_ms, then (consumer, token, job id, result flag+bytes)...
# -> fenced count
# The effect of one ``take`` and one ``finish`` per job, in fewer commands: each consumer's
# records are read with one HMGET and deleted with one HDEL, ``T running`` loses its fields in
# one HDEL, the retry records (T f) are looked for with one EXISTS and the old status records
# (T j) cleared with one DEL of all the call's keys (one queue's keys share a slot, so
# multi-key commands are allowed on a cluster); only the new record (RPUSH, PEXPIRE) is per job.
# No command beyond those the ACL line in ``queue`` grants.
ACK = _script(
    "ACK",
    r"""
limits(2)
local rejected = 0
local order, groups = {}, {}
for i = 5, #ARGV, 4 do
  local c = ARGV[i]
  if not groups[c] then
    groups[c] = {}
    order[#order + 1] = c
  end
  table.insert(groups[c], i)
end
local running, done, result, slot = {}, {}, {}, {}
for _, c in ipairs(order) do
  local k, at, toks = T .. 'i:' .. c, groups[c], {}
  for j, i in ipairs(at) do toks[j] = ARGV[i + 1] end
  local els = redis.call('HMGET', k, unpack(toks))
  local seen, del = {}, {}
  for j, i in ipairs(at) do
    local tok, id, e = toks[j], ARGV[i + 2], els[j]
    -- As ``take``: gone when not held, taken already in this call, or naming another job.
    local gone = not e or seen[tok]
    local why = not gone and bad(e)
    if not gone and not why and id_text(e) ~= id then gone = true end
    if gone then
      if fenced(c, tok) then rejected = rejected + 1 end
    else
      seen[tok] = true
      del[#del + 1] = tok
      if why then
        bury(e, why, now_ms())
      else
        count('inflight', -1)
        count('done', 1)
        running[#running + 1] = id_key(e)
        if LIM.ttl > 0 then
          -- A job settled twice in one call keeps one record, with the last result.
          if not slot[id] then
            done[#done + 1] = id
            slot[id] = #done
          end
          result[slot[id]] = ARGV[i + 3]
        end
      end
    end
  end
  if #del > 0 then redis.call('HDEL', k, unpack(del)) end
end
if #running > 0 then redis.call('HDEL', K.running, unpack(running)) end
if #done > 0 then
  local fks, jks = {}, {}
  for j, id in ipairs(done) do
    fks[j], jks[j] = T .. 'f:' .. id, T .. 'j:' .. id
  end
  -- Retry records (T f) are rare: one EXISTS for the batch, a GET each only when there are.
  local retried, stale = {}, {}
  if redis.call('EXISTS', unpack(fks)) > 0 then
    for j, fk in ipairs(fks) do
      retried[j] = redis.call('GET', fk)
      if retried[j] then stale[#stale + 1] = fk end
    end
    if #stale > 0 then redis.call('DEL', unpack(stale)) end
  end
  redis.call('DEL', unpack(jks))
  for j in ipairs(done) do
    local att = attempts_of(retried[j]) + 1
    redis.call('RPUSH', jks[j], 'done\n' .. att .. '\n0\n' .. result[j])
    redis.call('PEXPIRE', jks[j], LIM.ttl)
  end
end
counts_save()
return rejected
""",
)

# ARGV: tag, ttl_ms, dl_max, dl_age_ms, consumer, token, job id, delay_ms, element, error
# -> 1 (done, or done before) | 0 (fenced)
RETRY = _script(
    "RETRY",
    r"""
limits(2)
local id, delay, e, err = ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10]
if bad(e) then return redis.error_reply('RETRY: ' .. bad(e)) end
local st = take(ARGV[5], ARGV[6], id)
if st == 'gone' then return fenced(ARGV[5], ARGV[6]) and 0 or 1 end
if st == 'bad' then counts_save() return 1 end
if delay > 0 then
  local seq = redis.call('INCR', K.seq)
  redis.call('ZADD', K.delayed, now_ms() + delay, seq .. ':' .. e)
  mark(e, SCHEDULED)
else
  redis.call('RPUSH', K.waiting, e)
  mark(e, QUEUED)
end
ring()
counts_save()
if LIM.ttl > 0 then
  local fk = T .. 'f:' .. id
  local att = attempts_of(redis.call('GET', fk)) + 1
  redis.call('SET', fk, 'failed\n' .. att .. '\n' .. #err .. '\n' .. err .. '0', 'PX', LIM.ttl)
end
return 1
""",
)

# ARGV: tag, ttl_ms, dl_max, dl_age_ms, then (consumer, token)... in reverse delivery order
# -> how many were handed back
NACK = _script(
    "NACK",
    r"""
limits(2)
local n = 0
for i = 5, #ARGV, 2 do
  local st, e = take(ARGV[i], ARGV[i + 1])
  if st == 'ok' then
    redis.call('LPUSH', K.waiting, e)
    mark(e, QUEUED)
    n = n + 1
  end
end
if n > 0 then ring() end
counts_save()
return n
""",
)

# ARGV: tag, ttl_ms, dl_max, dl_age_ms, consumer, token, job id, reason
# -> 1 (done, or done before) | 0 (fenced)
DEAD = _script(
    "DEAD",
    r"""
limits(2)
local id, reason = ARGV[7], ARGV[8]
local st, e = take(ARGV[5], ARGV[6], id)
if st == 'gone' then return fenced(ARGV[5], ARGV[6]) and 0 or 1 end
if st == 'ok' then
  bury(e, reason, now_ms())
  dead_record(id, reason)
end
counts_save()
return 1
""",
)

# ARGV: tag, ttl_ms, dl_max, dl_age_ms, max_redeliveries, consumer|'', reason, cap,
#       '1' + suspect id keys... (only those count as crashes) | '0' (all count)
#       | 'p' (all but the tokens in T p:<consumer>, its prefetched ones)
# With a consumer: reclaim its jobs of this queue. Without: recover one consumer whose lease
# here expired. Takes at most cap records -> {jobs handed back or quarantined, records or
# expired consumers left} (malformed records are dead-lettered and not counted)
HAND_BACK = _script(
    "HAND_BACK",
    r"""
limits(2)
local max_rd, c, reason, cap = tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8])
local now = now_ms()
if c == '' then
  local expired = redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, 1)
  if #expired == 0 then return {0, 0} end
  c = expired[1]
end
local suspects, prefetched = nil, nil
if ARGV[9] == '1' then
  suspects = {}
  for i = 10, #ARGV do suspects[ARGV[i]] = true end
elseif ARGV[9] == 'p' then
  prefetched = {}
  for _, t in ipairs(redis.call('SMEMBERS', T .. 'p:' .. c)) do prefetched[t] = true end
end
local k = T .. 'i:' .. c
local held = redis.call('HGETALL', k)
local total = #held / 2
local n = math.min(total, cap)
local toks, back, rang = {}, 0, false
for j = 1, n do
  local tok, e = held[2 * j - 1], held[2 * j]
  toks[j] = tok
  local why = bad(e)
  if why then
    bury(e, why, now)
  else
    back = back + 1
    count('inflight', -1)
    local key = id_key(e)
    redis.call('HDEL', K.running, key)
    local deaths = string.byte(e, 1) + 1
    if (suspects and not suspects[key]) or (prefetched and prefetched[tok]) then
      -- Merely prefetched, never started: back uncounted.
      redis.call('LPUSH', K.waiting, e)
      mark(e, QUEUED)
      rang = true
    elseif deaths >= max_rd then
      local why2 = reason .. ', ' .. deaths .. ' times'
      bury(e, why2, now)
      count('quarantined', 1)
      dead_record(id_text(e), why2)
    else
      local again = string.char(math.min(deaths, 255)) .. string.sub(e, 2)
      redis.call('LPUSH', K.waiting, again)
      mark(again, QUEUED)
      rang = true
    end
  end
end
if rang then ring() end
if n > 0 then
  redis.call('HDEL', k, unpack(toks))
  -- Remember what was taken: a late settlement of these is fenced, not a repeat.
  local hk = T .. 'h:' .. c
  redis.call('SADD', hk, unpack(toks))
  redis.call('EXPIRE', hk, 86400)
  if ARGV[6] == '' then count('recovered', back) end
end
counts_save()
local left = total - n
if left == 0 then
  redis.call('ZREM', K.leases, c)
  redis.call('DEL', T .. 'p:' .. c)
  if ARGV[6] == '' then
    left = #redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, 1)
  end
end
return {back, left}
""",
)

# ARGV: tag, consumer, lease_ms, prefetched token...
# -> {lease 1 (existed) | 0 (created), handed-back count, the queue's epoch | nil}
HEARTBEAT = _script(
    "HEARTBEAT",
    r"""
local c, lease = ARGV[2], tonumber(ARGV[3])
local existed = redis.call('ZADD', K.leases, now_ms() + lease, c) == 0
local pk = T .. 'p:' .. c
redis.call('DEL', pk)
if #ARGV > 3 then
  redis.call('SADD', pk, unpack(ARGV, 4))
  redis.call('PEXPIRE', pk, lease * 10)
end
return {existed and 1 or 0, redis.call('SCARD', T .. 'h:' .. c), redis.call('GET', K.epoch)}
""",
)

# ARGV: tag, consumer, lease_ms, token...
# -> {lease 1 (existed, renewed) | 0 (gone), handed-back count, {1 | 0 per token: still held}}
CONFIRM = _script(
    "CONFIRM",
    r"""
local c, lease = ARGV[2], tonumber(ARGV[3])
local existed = redis.call('ZSCORE', K.leases, c)
if existed then redis.call('ZADD', K.leases, now_ms() + lease, c) end
local k, flags = T .. 'i:' .. c, {}
for i = 4, #ARGV do flags[#flags + 1] = redis.call('HEXISTS', k, ARGV[i]) end
return {existed and 1 or 0, redis.call('SCARD', T .. 'h:' .. c), flags}
""",
)

# ARGV: tag, dead-letter member... -> how many were requeued
# A member that does not parse, or whose element is malformed, stays dead (it would only die
# again); the others go back as fresh attempts.
REQUEUE_DEAD = _script(
    "REQUEUE_DEAD",
    r"""
local n = 0
for i = 2, #ARGV do
  local m = ARGV[i]
  local a = string.find(m, '\n', 1, true)
  local b = a and string.find(m, '\n', a + 1, true)
  local len = b and tonumber(string.sub(m, a + 1, b - 1))
  local e = len and string.sub(m, b + 1 + len)
  if e and not bad(e) and redis.call('ZREM', K.dead, m) == 1 then
    -- A requeued job is a fresh attempt: its crash count starts again.
    local fresh = '\0' .. string.sub(e, 2)
    redis.call('RPUSH', K.waiting, fresh)
    mark(fresh, QUEUED)
    n = n + 1
  end
end
if n > 0 then ring() end
return n
""",
)

# ARGV: tag, ttl_ms, job id, id key, marker bucket (3 hex digits), marker field, reason
# -> 1 (cancelled) | 0 (not waiting here: no marker)
# The job cannot be taken out of the list or the delayed set without a scan, so it is
# tombstoned there, and counted dead now.
CANCEL = _script(
    "CANCEL",
    r"""
LIM.ttl = tonumber(ARGV[2])
local id, key, reason = ARGV[3], ARGV[4], ARGV[7]
local bucket, field = T .. 'w:' .. ARGV[5], ARGV[6]
local v = redis.call('HGET', bucket, field)
if not v then return 0 end
local where = v == '2' and 'd' or 'q'
redis.call('HDEL', bucket, field)
redis.call('HSET', K.cancelled, key, where)
count('x' .. where, 1)
count('dead', 1)
counts_save()
local fk = T .. 'f:' .. id
local att = attempts_of(redis.call('GET', fk))
redis.call('DEL', fk)
if LIM.ttl > 0 then finish(id, 'dead', att, reason, '0') end
return 1
""",
)
