"""Counters in Redis, shared exactly by many gateway replicas.

Every operation runs inside Redis as Lua (`redis_scripts.BATCH`), so
read-check-write is atomic across replicas; the window is the key's expiry,
set at the first hit. A request costs one operation at each decision point:
`admit` (both policy checks, or the token reservation) and `settle` (the
token report, or a reservation's commit/release). With `batch` (the
default) the operations that concurrent requests issue in one event-loop
turn travel together in one `EVALSHA` (`coalesce.Coalescer`), at most
`max_connections` such calls at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from maas_metrics.limiter.coalesce import Coalescer
from maas_metrics.limiter.redis_scripts import BATCH, SHAPES
from maas_metrics.limiter.store import (
    Admission,
    BudgetCheck,
    CounterState,
    RequestCheck,
    StoreUnavailable,
    TokenCheck,
    TokenState,
)

MAX_BATCH = 256  # operations per script call: bounds how long one call holds Redis

# An operation: its letter in the batch script, its keys, its arguments.
_Op = tuple[str, list[str], list[int | str]]
_Reply = list[int]

_HIREDIS = HiredisRespSerializer() if HIREDIS_AVAILABLE else None


class _HiredisPacking:
    """Packs commands with hiredis (C) where redis-py's asyncio connections use Python.

    redis-py's sync connections already do this; in the asyncio ones packing
    a batch's `EVALSHA` was the largest single cost of a Redis decision.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        assert _HIREDIS is not None
        return _HIREDIS.pack(*args)  # type: ignore[no-any-return]


class _TCPConnection(_HiredisPacking, aioredis.Connection):
    pass


class _TLSConnection(_HiredisPacking, aioredis.SSLConnection):
    pass


_FASTER: dict[type[aioredis.connection.AbstractConnection], type[Any]] = {
    aioredis.Connection: _TCPConnection,
    aioredis.SSLConnection: _TLSConnection,
}


def reservation_keys(key: str) -> tuple[str, str]:
    """The hash and sorted set holding a token counter's reservations (never a counter's key)."""
    return f"maas-res:{key}", f"maas-exp:{key}"


class RedisStore:
    """Fixed-window counters in Redis; any connection failure becomes `StoreUnavailable`."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 0.5,
        max_connections: int = 1,
        batch: bool = True,
    ) -> None:
        # A blocking pool: more concurrent calls than connections wait for one
        # (up to the timeout) instead of failing with "Too many connections".
        # Batches use at most `max_connections`; one more keeps the health ping free.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections + 1,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=0,
            # A pooled connection left over from before a Redis restart fails once on use:
            # retry that call on a fresh connection (connection errors only, no back-off).
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        if _HIREDIS is not None:
            pool.connection_class = _FASTER.get(pool.connection_class, pool.connection_class)
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._script = self._redis.register_script(BATCH)
        self._batch = batch
        # One script call per loop turn, at most `max_connections` in flight.
        self._coalescer: Coalescer[_Op, _Reply] = Coalescer(self._send, MAX_BATCH, max_connections)
        # After a connection failure every pooled connection may be stale (Redis restarted):
        # the next successful ping drops them all, so no request fails on one afterwards.
        self._stale_pool = False

    async def _send(self, ops: Sequence[_Op]) -> list[_Reply | Exception]:
        """Run `ops` in one script call; each gets its own slice of the reply, or its own error."""
        keys: list[str] = []
        args: list[int | str] = []
        for kind, op_keys, op_args in ops:
            keys += op_keys
            args.append(kind)
            args += op_args
        reply = await self._script(keys=keys, args=args)  # reloads the script if Redis lost it
        results: list[_Reply | Exception] = []
        position = 0
        for kind, _, _ in ops:
            size = SHAPES[kind][2]
            part = reply[position : position + size]
            position += size
            first = part[0]
            if isinstance(first, bytes):  # this operation raised inside the script
                results.append(ResponseError(first.decode(errors="replace")))
            else:
                results.append(part)
        return results

    async def _run(self, kind: str, keys: list[str], args: list[int | str]) -> _Reply:
        try:
            if self._batch:
                return await self._coalescer.submit((kind, keys, args))
            result = (await self._send([(kind, keys, args)]))[0]
            if isinstance(result, Exception):
                raise result
            return result
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            self._stale_pool = True
            raise StoreUnavailable(str(error) or type(error).__name__) from error
        except RedisError as error:
            # A server that is loading, read-only or out of memory cannot count either.
            raise StoreUnavailable(str(error)) from error

    # --- the store interface -----------------------------------------------------------

    async def admit(
        self,
        request: RequestCheck | None,
        tokens: TokenCheck | None,
        budget: BudgetCheck | None = None,
    ) -> Admission:
        keys = ["", "", "", ""]
        args: list[int | str] = [0, 0, 0, 0, 0, 0, 0, "", 0]
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
        spent = None
        if budget is None:
            r = await self._run("a", keys, args)
        else:  # the budget first, in the same script call ("A": see redis_scripts)
            budget_args: list[int | str] = [budget.max_value, budget.window_ms, int(budget.hard)]
            b = await self._run("A", [budget.key, *keys], [*budget_args, *args])
            spent, r = CounterState(bool(b[0]), b[1], b[2]), b[3:]
        return Admission(
            None if r[0] < 0 else CounterState(bool(r[0]), r[1], r[2]),
            None if r[3] < 0 else TokenState(bool(r[3]), r[4], r[5], r[6]),
            spent,
        )

    async def settle(
        self, key: str, window_ms: int, delta: int, reservation_id: str = ""
    ) -> TokenState:
        hash_key, expiry_key = reservation_keys(key)
        r = await self._run("s", [key, hash_key, expiry_key], [delta, window_ms, reservation_id])
        return TokenState(True, r[1], r[2], r[3])

    async def check_and_update(
        self, key: str, delta: int, max_value: int, window_ms: int
    ) -> CounterState:
        r = await self._run("c", [key], [delta, max_value, window_ms])
        return CounterState(bool(r[0]), r[1], r[2])

    async def check(self, key: str, max_value: int, window_ms: int) -> CounterState:
        r = await self._run("k", [key], [max_value, window_ms])
        return CounterState(bool(r[0]), r[1], r[2])

    async def update(self, key: str, delta: int, window_ms: int) -> CounterState:
        r = await self._run("u", [key], [delta, window_ms])
        return CounterState(True, r[1], r[2])

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as error:
            self._stale_pool = True
            raise StoreUnavailable(str(error)) from error
        if self._stale_pool:
            self._stale_pool = False
            await self._redis.connection_pool.disconnect(inuse_connections=False)

    async def close(self) -> None:
        await self._coalescer.drain()
        await self._redis.aclose()
