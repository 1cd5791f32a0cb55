"""Counters in Redis, shared exactly by many gateway replicas.

Each decision point is one server-side Lua script, so read-check-write is
atomic across replicas and costs one round trip: `admit` (both policy checks
of a request, or the token reservation) and `settle` (the token report, or a
reservation's commit/release). The window is the key's expiry, set at the
first hit. Reservations of a token counter live in a hash (id -> amount, plus
a running total under `#`) and a sorted set (id -> expiry in ms, Redis's own
clock), both expiring with the counter's window.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from maas_metrics.limiter.store import (
    Admission,
    CounterState,
    RequestCheck,
    StoreUnavailable,
    TokenCheck,
    TokenState,
)

# Shared by the two reservation-aware scripts: Redis's clock in ms, and the live total
# held on a counter after dropping expired reservations (KEYS h = hash, z = sorted set).
_RESERVATIONS = """
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
"""

# KEYS: request counter, token counter, token reservations hash, token expiry zset.
# ARGV: has_request, request_max, request_window_ms,
#       has_tokens, token_max, token_window_ms, reserve, reservation_id, reservation_ttl_ms.
# Returns {request_applied (-1: not checked), value, ttl, token_applied (-1), value, held, ttl}.
_ADMIT = (
    _RESERVATIONS
    + """
local r_applied, r_value, r_ttl = -1, 0, 0
if ARGV[1] == '1' then
  r_ttl = redis.call('PTTL', KEYS[1])
  local fresh = r_ttl <= 0
  if fresh then r_ttl = tonumber(ARGV[3]) else r_value = tonumber(redis.call('GET', KEYS[1])) end
  if r_value + 1 > tonumber(ARGV[2]) then return {0, r_value, r_ttl, -1, 0, 0, 0} end
  if fresh then redis.call('SET', KEYS[1], 1, 'PX', r_ttl) else redis.call('INCR', KEYS[1]) end
  r_applied, r_value = 1, r_value + 1
end
if ARGV[4] ~= '1' then return {r_applied, r_value, r_ttl, -1, 0, 0, 0} end
local max = tonumber(ARGV[5])
local ttl = redis.call('PTTL', KEYS[2])
local fresh = ttl <= 0
local value = 0
if fresh then ttl = tonumber(ARGV[6]) else value = tonumber(redis.call('GET', KEYS[2])) end
local amount = tonumber(ARGV[7])
if amount <= 0 then
  local ok = 0
  if value < max then ok = 1 end
  return {r_applied, r_value, r_ttl, ok, value, 0, ttl}
end
local held = 0
if fresh then redis.call('DEL', KEYS[3], KEYS[4]) else held = outstanding(KEYS[3], KEYS[4]) end
if value + held + amount > max then return {r_applied, r_value, r_ttl, 0, value, held, ttl} end
if fresh then redis.call('SET', KEYS[2], 0, 'PX', ttl) end
redis.call('HSET', KEYS[3], ARGV[8], amount)
redis.call('HINCRBY', KEYS[3], '#', amount)
redis.call('ZADD', KEYS[4], clock() + math.min(tonumber(ARGV[9]), ttl), ARGV[8])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return {r_applied, r_value, r_ttl, 1, value, held + amount, ttl}
"""
)

# KEYS: token counter, reservations hash, expiry zset. ARGV: delta, window_ms, reservation_id.
# Returns {1, value, held, ttl}.
_SETTLE = (
    _RESERVATIONS
    + """
if ARGV[3] ~= '' then
  local amount = redis.call('HGET', KEYS[2], ARGV[3])
  if amount then
    redis.call('HDEL', KEYS[2], ARGV[3])
    redis.call('ZREM', KEYS[3], ARGV[3])
    redis.call('HINCRBY', KEYS[2], '#', -tonumber(amount))
  end
end
local delta = tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
local value = 0
if ttl > 0 then
  if delta > 0 then value = redis.call('INCRBY', KEYS[1], delta)
  else value = tonumber(redis.call('GET', KEYS[1])) end
else
  ttl = tonumber(ARGV[2])
  redis.call('DEL', KEYS[2], KEYS[3])
  if delta > 0 then
    redis.call('SET', KEYS[1], delta, 'PX', ttl)
    value = delta
  end
  return {1, value, 0, ttl}
end
return {1, value, outstanding(KEYS[2], KEYS[3]), ttl}
"""
)

# KEYS[1] counter; ARGV: delta, max_value, window_ms. Returns {applied, value, ttl_ms}.
_CHECK_AND_UPDATE = """
local ttl = redis.call('PTTL', KEYS[1])
local fresh = ttl <= 0
local value = 0
if fresh then ttl = tonumber(ARGV[3]) else value = tonumber(redis.call('GET', KEYS[1])) end
local delta = tonumber(ARGV[1])
if value + delta > tonumber(ARGV[2]) then return {0, value, ttl} end
if fresh then
  redis.call('SET', KEYS[1], delta, 'PX', ttl)
else
  redis.call('INCRBY', KEYS[1], delta)
end
return {1, value + delta, ttl}
"""

# KEYS[1] counter; ARGV: max_value, window_ms.
_CHECK = """
local ttl = redis.call('PTTL', KEYS[1])
local value = 0
if ttl > 0 then value = tonumber(redis.call('GET', KEYS[1])) else ttl = tonumber(ARGV[2]) end
if value < tonumber(ARGV[1]) then return {1, value, ttl} end
return {0, value, ttl}
"""

# KEYS[1] counter; ARGV: delta, window_ms.
_UPDATE = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  local value = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
  return {1, value, ttl}
end
redis.call('SET', KEYS[1], tonumber(ARGV[1]), 'PX', tonumber(ARGV[2]))
return {1, tonumber(ARGV[1]), tonumber(ARGV[2])}
"""


def reservation_keys(key: str) -> tuple[str, str]:
    """The hash and sorted set holding a token counter's reservations (never a counter's key)."""
    return f"maas-res:{key}", f"maas-exp:{key}"


_Job = tuple[Any, list[str], list[int | str], "asyncio.Future[Any]"]


class RedisStore:
    """Fixed-window counters in Redis; any connection failure becomes `StoreUnavailable`.

    With `pipeline` (the default), the scripts that concurrent requests call
    in one event-loop turn leave as one pipeline: one write, one read, one
    connection, instead of one round trip each. Every script stays atomic on
    its own; a caller alone in its turn is sent at once, as without pipelining.
    """

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 0.5,
        max_connections: int = 64,
        pipeline: bool = True,
    ) -> None:
        # A blocking pool: more concurrent operations than connections wait for one
        # (up to the timeout) instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=0,
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._check_and_update = self._redis.register_script(_CHECK_AND_UPDATE)
        self._check = self._redis.register_script(_CHECK)
        self._update = self._redis.register_script(_UPDATE)
        self._pipeline = pipeline
        self._queue: list[_Job] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def _start_flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Job]) -> None:
        """Send a turn's scripts as one pipeline and hand each caller its own reply."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as error:  # the connection failed: every caller learns it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (script, keys, args, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):  # Redis restarted: load the script, retry once
                try:
                    reply = await script(keys=keys, args=args)
                except Exception as error:
                    reply = error
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _send(self, script: Any, keys: list[str], args: list[int | str]) -> list[Any]:
        if not self._pipeline:
            reply: list[Any] = await script(keys=keys, args=args)
            return reply
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._queue:
            # Flush after the callers already scheduled in this loop turn have queued too.
            asyncio.get_running_loop().call_soon(self._start_flush)
        self._queue.append((script, keys, args, future))
        result: list[Any] = await future
        return result

    async def _call(self, script: Any, keys: list[str], args: list[int | str]) -> list[Any]:
        try:
            reply = await self._send(script, keys, args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error
        except RedisError as error:
            # A server that is loading, read-only or out of memory cannot count either.
            raise StoreUnavailable(str(error)) from error
        return reply

    async def _run(self, script: Any, key: str, *args: int) -> CounterState:
        applied, value, ttl = await self._call(script, [key], list(args))
        return CounterState(bool(int(applied)), int(value), int(ttl))

    async def admit(self, request: RequestCheck | None, tokens: TokenCheck | None) -> Admission:
        args: list[int | str] = [0, 0, 0, 0, 0, 0, 0, "", 0]
        keys = ["", "", "", ""]
        if request is not None:
            keys[0] = request.key
            args[0:3] = [1, request.max_value, request.window_ms]
        if tokens is not None:
            keys[1] = tokens.key
            keys[2], keys[3] = reservation_keys(tokens.key)
            args[3:9] = [
                1,
                tokens.max_value,
                tokens.window_ms,
                tokens.reserve,
                tokens.reservation_id,
                tokens.ttl_ms,
            ]
        reply = [int(x) for x in await self._call(self._admit, keys, args)]
        state = None if reply[0] < 0 else CounterState(bool(reply[0]), reply[1], reply[2])
        token_state = (
            None if reply[3] < 0 else TokenState(bool(reply[3]), reply[4], reply[5], reply[6])
        )
        return Admission(state, token_state)

    async def settle(
        self, key: str, window_ms: int, delta: int, reservation_id: str = ""
    ) -> TokenState:
        hash_key, expiry_key = reservation_keys(key)
        reply = await self._call(
            self._settle, [key, hash_key, expiry_key], [delta, window_ms, reservation_id]
        )
        _, value, held, ttl = (int(x) for x in reply)
        return TokenState(True, value, held, ttl)

    async def check_and_update(
        self, key: str, delta: int, max_value: int, window_ms: int
    ) -> CounterState:
        return await self._run(self._check_and_update, key, delta, max_value, window_ms)

    async def check(self, key: str, max_value: int, window_ms: int) -> CounterState:
        return await self._run(self._check, key, max_value, window_ms)

    async def update(self, key: str, delta: int, window_ms: int) -> CounterState:
        return await self._run(self._update, key, delta, window_ms)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    async def close(self) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._redis.aclose()
