"""Counters in Redis, shared exactly by many gateway replicas.

Each operation is one server-side Lua script, so read-check-write is atomic
across replicas; the window is the key's expiry, set at the first hit.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from maas_metrics.limiter.store import CounterState, StoreUnavailable

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


class RedisStore:
    """Fixed-window counters in Redis; any connection failure becomes `StoreUnavailable`."""

    def __init__(self, url: str, timeout_seconds: float = 0.5, max_connections: int = 64) -> None:
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
        self._check_and_update = self._redis.register_script(_CHECK_AND_UPDATE)
        self._check = self._redis.register_script(_CHECK)
        self._update = self._redis.register_script(_UPDATE)

    @staticmethod
    def _state(reply: Any) -> CounterState:
        applied, value, ttl = reply
        return CounterState(bool(int(applied)), int(value), int(ttl))

    async def _run(self, script: Any, key: str, *args: int) -> CounterState:
        try:
            return self._state(await script(keys=[key], args=list(args)))
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise StoreUnavailable(str(error) or type(error).__name__) from error
        except RedisError as error:
            # A server that is loading, read-only or out of memory cannot count either.
            raise StoreUnavailable(str(error)) from error

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
        await self._redis.aclose()
