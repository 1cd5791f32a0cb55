"""The Lua that runs inside Redis: every counter operation, and one batch script that runs many.

`BATCH` takes a sequence of operations (a letter, its keys in KEYS, its
arguments in ARGV) and returns their results one after another. Each
operation behaves exactly as if it ran alone; the batch as a whole is
atomic too. An operation that raises (a key of the wrong type, a value that
is not a number, a write Redis refuses) fails alone: its result is its
error message (a string, where a result starts with an integer) padded to
its result's length, and the operations after it still run. What it wrote
before the error stays, as it would had it run alone (Redis never rolls a
script back). One `EVALSHA` can so carry every decision that concurrent
requests made in one event-loop turn: one round trip, one command to encode
and one reply to parse, instead of one per decision.

Operations (keys; arguments -> result):
  a admit    request counter, token counter, reservations hash, expiry zset;
             has_request, request_max, request_window_ms, has_tokens, token_max,
             token_window_ms, reserve, reservation_id, reservation_ttl_ms
             -> request_applied (-1: not checked), value, ttl, token_applied (-1), value, held, ttl
  A admit within a monthly budget: budget counter + the keys of `a`; budget_max,
             budget_window_ms, hard + the arguments of `a` -> budget_applied (value < max),
             value, ttl + the result of `a` (all -1/0: a hard budget at or over its max
             stopped the admission before any policy)
  s settle   token counter, reservations hash, expiry zset; delta, window_ms, reservation_id
             -> 1, value, held, ttl
  c check_and_update  counter; delta, max, window_ms -> applied, value, ttl
  k check    counter; max, window_ms -> applied, value, ttl
  u update   counter; delta, window_ms -> 1, value, ttl

Reservations of a token counter live in a hash (id -> amount, and the
running total under `#`) and a sorted set (id -> expiry in ms on Redis's own
clock), both expiring with the counter's window.
"""

from __future__ import annotations

# (keys, arguments, result length) of each operation letter.
SHAPES = {
    "a": (4, 9, 7),
    "A": (5, 12, 10),
    "s": (3, 3, 4),
    "c": (1, 3, 3),
    "k": (1, 2, 3),
    "u": (1, 2, 3),
}

BATCH = """
local now_ms = nil
local function clock()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end

local function outstanding(h, z)
  while true do
    local expired = redis.call('ZRANGEBYSCORE', z, '-inf', clock(), 'LIMIT', 0, 500)
    if #expired == 0 then break end
    local gone = 0
    for _, amount in ipairs(redis.call('HMGET', h, unpack(expired))) do
      if amount then gone = gone + tonumber(amount) end
    end
    redis.call('HDEL', h, unpack(expired))
    redis.call('ZREM', z, unpack(expired))
    if gone > 0 then redis.call('HINCRBY', h, '#', -gone) end
  end
  return tonumber(redis.call('HGET', h, '#') or '0')
end

local function admit(K, A)
  local r_applied, r_value, r_ttl = -1, 0, 0
  if A[1] == '1' then
    r_ttl = redis.call('PTTL', K[1])
    local fresh = r_ttl <= 0
    if fresh then r_ttl = tonumber(A[3]) else r_value = tonumber(redis.call('GET', K[1])) end
    if r_value + 1 > tonumber(A[2]) then return {0, r_value, r_ttl, -1, 0, 0, 0} end
    if fresh then redis.call('SET', K[1], 1, 'PX', r_ttl) else redis.call('INCR', K[1]) end
    r_applied, r_value = 1, r_value + 1
  end
  if A[4] ~= '1' then return {r_applied, r_value, r_ttl, -1, 0, 0, 0} end
  local max = tonumber(A[5])
  local ttl = redis.call('PTTL', K[2])
  local fresh = ttl <= 0
  local value = 0
  if fresh then ttl = tonumber(A[6]) else value = tonumber(redis.call('GET', K[2])) end
  local amount = tonumber(A[7])
  if amount <= 0 then
    local ok = 0
    if value < max then ok = 1 end
    return {r_applied, r_value, r_ttl, ok, value, 0, ttl}
  end
  local held = 0
  if fresh then redis.call('DEL', K[3], K[4]) else held = outstanding(K[3], K[4]) end
  if value + held + amount > max then return {r_applied, r_value, r_ttl, 0, value, held, ttl} end
  if fresh then redis.call('SET', K[2], 0, 'PX', ttl) end
  redis.call('HSET', K[3], A[8], amount)
  redis.call('HINCRBY', K[3], '#', amount)
  redis.call('ZADD', K[4], clock() + math.min(tonumber(A[9]), ttl), A[8])
  redis.call('PEXPIRE', K[3], ttl)
  redis.call('PEXPIRE', K[4], ttl)
  return {r_applied, r_value, r_ttl, 1, value, held + amount, ttl}
end

local function admit_in_budget(K, A)
  local ttl = redis.call('PTTL', K[1])
  local value = 0
  if ttl > 0 then value = tonumber(redis.call('GET', K[1])) else ttl = tonumber(A[2]) end
  local within = 0
  if value < tonumber(A[1]) then within = 1 end
  if within == 0 and A[3] == '1' then return {0, value, ttl, -1, 0, 0, -1, 0, 0, 0} end
  local r = admit({K[2], K[3], K[4], K[5]}, {A[4], A[5], A[6], A[7], A[8], A[9], A[10], A[11], A[12]})
  return {within, value, ttl, r[1], r[2], r[3], r[4], r[5], r[6], r[7]}
end

local function settle(K, A)
  if A[3] ~= '' then
    local amount = redis.call('HGET', K[2], A[3])
    if amount then
      redis.call('HDEL', K[2], A[3])
      redis.call('ZREM', K[3], A[3])
      redis.call('HINCRBY', K[2], '#', -tonumber(amount))
    end
  end
  local delta = tonumber(A[1])
  local ttl = redis.call('PTTL', K[1])
  local value = 0
  if ttl <= 0 then
    ttl = tonumber(A[2])
    redis.call('DEL', K[2], K[3])
    if delta > 0 then
      redis.call('SET', K[1], delta, 'PX', ttl)
      value = delta
    end
    return {1, value, 0, ttl}
  end
  if delta > 0 then value = redis.call('INCRBY', K[1], delta)
  else value = tonumber(redis.call('GET', K[1])) end
  return {1, value, outstanding(K[2], K[3]), ttl}
end

local function check_and_update(K, A)
  local ttl = redis.call('PTTL', K[1])
  local fresh = ttl <= 0
  local value = 0
  if fresh then ttl = tonumber(A[3]) else value = tonumber(redis.call('GET', K[1])) end
  local delta = tonumber(A[1])
  if value + delta > tonumber(A[2]) then return {0, value, ttl} end
  if fresh then redis.call('SET', K[1], delta, 'PX', ttl) else redis.call('INCRBY', K[1], delta) end
  return {1, value + delta, ttl}
end

local function check(K, A)
  local ttl = redis.call('PTTL', K[1])
  local value = 0
  if ttl > 0 then value = tonumber(redis.call('GET', K[1])) else ttl = tonumber(A[2]) end
  if value < tonumber(A[1]) then return {1, value, ttl} end
  return {0, value, ttl}
end

local function update(K, A)
  local ttl = redis.call('PTTL', K[1])
  if ttl > 0 then return {1, redis.call('INCRBY', K[1], tonumber(A[1])), ttl} end
  redis.call('SET', K[1], tonumber(A[1]), 'PX', tonumber(A[2]))
  return {1, tonumber(A[1]), tonumber(A[2])}
end

local ops = {
  a = {admit, 4, 9, 7}, A = {admit_in_budget, 5, 12, 10}, s = {settle, 3, 3, 4},
  c = {check_and_update, 1, 3, 3}, k = {check, 1, 2, 3}, u = {update, 1, 2, 3},
}
local out = {}
local ki, ai = 1, 1
while ai <= #ARGV do
  local op = ops[ARGV[ai]]
  local K, A = {}, {}
  for j = 1, op[2] do K[j] = KEYS[ki + j - 1] end
  for j = 1, op[3] do A[j] = ARGV[ai + j] end
  ki, ai = ki + op[2], ai + 1 + op[3]
  local ok, r = pcall(op[1], K, A)
  if not ok then  -- this operation alone fails: its message, padded to its result's length
    if type(r) == 'table' then r = r.err end
    r = {tostring(r)}
    for j = 2, op[4] do r[j] = 0 end
  end
  for _, v in ipairs(r) do out[#out + 1] = v end
end
return out
"""
