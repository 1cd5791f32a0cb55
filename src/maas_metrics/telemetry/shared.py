"""Counters shared by gateway workers through Redis: workers push deltas, the operator renders.

Each worker counts in its own `GatewayMetrics` (nothing changes on the
request path) and a `CounterPusher` adds what changed since its last push
to one Redis hash per family (`HINCRBY`, all families of one push in one
MULTI/EXEC). The hashes hold the gateway's totals: a worker that restarts
starts again from 0 locally and only adds, so no series ever goes back,
and counts survive worker and gateway restarts. A worker killed with
SIGKILL loses at most what it counted since its last push
(`gateway.workers.flush_seconds`).

`SharedCounters` (in the process of the operator listener) reads the hashes
at each scrape into its own `GatewayMetrics`, whose `Family.inc` keeps the
born-at-zero rule: a series first seen in Redis is scraped at 0 first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from maas_metrics.telemetry.metrics import Family, GatewayMetrics

log = logging.getLogger(__name__)

Key = tuple[str, ...]


def metrics_key(configured: str | None, port: int) -> str:
    """The Redis key prefix of one gateway's shared counters (see `config.Workers`)."""
    return configured if configured is not None else f"maas-metrics:{socket.gethostname()}:{port}"


def counter_families(metrics: GatewayMetrics) -> list[Family]:
    return [family for family in metrics.families() if family.kind == "counter"]


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


class CounterPusher:
    """A worker's side: push the deltas of its counters to Redis every `interval` seconds."""

    def __init__(self, metrics: GatewayMetrics, url: str, prefix: str, interval: float) -> None:
        self.families = counter_families(metrics)
        for family in self.families:
            family.hold_seconds = 0.0  # never scraped here: series ripen at the next push
        self.prefix = prefix
        self.interval = interval
        self._redis = _client(url)
        self._pushed: dict[str, dict[Key, float]] = {f.name: {} for f in self.families}
        self._held: dict[str, set[Key]] = {f.name: set() for f in self.families}
        self._task: asyncio.Task[None] | None = None

    def _deltas(self) -> dict[str, dict[Key, float]]:
        """What changed since the last successful push, per family (taken from the families)."""
        out: dict[str, dict[Key, float]] = {}
        for family in self.families:
            new, dirty = family.take_changes()
            held = self._held[family.name]
            held.update(new)
            pushed = self._pushed[family.name]
            deltas: dict[Key, float] = {}
            for key in held | dirty:
                delta = family.get(key) - pushed.get(key, 0)
                if delta:
                    deltas[key] = delta
            held.difference_update(dirty)  # ripe series come back through `dirty` from now on
            if deltas:
                out[family.name] = deltas
        return out

    async def push(self) -> None:
        """One push; on a Redis failure the deltas stay pending for the next one."""
        deltas = self._deltas()
        if not deltas:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for name, changes in deltas.items():
                hash_key = f"{self.prefix}:{name}"
                for key, delta in changes.items():
                    field = orjson.dumps(key)
                    if float(delta).is_integer():
                        pipe.hincrby(hash_key, field, int(delta))
                    else:
                        pipe.hincrbyfloat(hash_key, field, delta)
            try:
                await pipe.execute()
            except (RedisError, OSError) as error:
                # Not applied (MULTI/EXEC): keep them for the next push. The held sets must
                # see these keys again, as `take_changes` will not return them twice.
                for name, changes in deltas.items():
                    self._held[name].update(changes)
                log.warning("pushing metric counts to Redis failed (%s); will retry", error)
                return
        for name, changes in deltas.items():
            pushed = self._pushed[name]
            for key, delta in changes.items():
                pushed[key] = pushed.get(key, 0) + delta

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.push()
            except Exception:  # the loop must outlive any surprise; counts stay pending
                log.exception("metric push failed unexpectedly")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and push what is left (a clean stop loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.push()
        await self._redis.aclose()


class SharedCounters:
    """The operator's side: the gateway's totals from Redis, kept in one `GatewayMetrics`."""

    def __init__(self, metrics: GatewayMetrics, url: str, prefix: str) -> None:
        self.metrics = metrics
        self.families = counter_families(metrics)
        self.prefix = prefix
        self._redis = _client(url)
        self._loaded = False
        # Per series: the last total read, and what earlier lives of the hash added up to
        # (a Redis that lost its data starts the totals again from the workers' next deltas).
        self._last: dict[tuple[str, Key], float] = {}
        self._base: dict[tuple[str, Key], float] = {}

    async def _read(self) -> list[dict[bytes, bytes]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for family in self.families:
                pipe.hgetall(f"{self.prefix}:{family.name}")
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        return replies

    async def refresh(self) -> bool:
        """Read the totals; False (and the last values kept) when Redis does not answer.

        Totals present at the first successful read were counted (and born at
        zero) by an earlier run of the gateway: they are shown at once, so a
        restart of the gateway never looks like a counter reset. Series that
        appear later are born at zero. A total that went down means Redis lost
        the hash (flushed, or restarted without persistence): what it holds
        now is what workers pushed since, so it is added to what was shown.
        """
        try:
            replies = await self._read()
        except (RedisError, OSError) as error:
            log.warning("reading shared metric counts from Redis failed: %s", error)
            return False
        for family, reply in zip(self.families, replies, strict=True):
            for field, raw in reply.items():
                key: Key = tuple(orjson.loads(field))
                total = float(raw)
                if total.is_integer():
                    total = int(total)
                series = (family.name, key)
                last = self._last.get(series)
                if last is not None and total < last:
                    self._base[series] = self._base.get(series, 0) + last
                self._last[series] = total
                target = self._base.get(series, 0) + total
                if not self._loaded:
                    family.set(key, target)
                    continue
                delta = target - family.get(key)
                if delta > 0:
                    family.inc(key, delta)
        self._loaded = True
        return True

    async def reachable(self) -> bool:
        """Whether Redis answers a PING (for /healthz: cheaper than reading every total)."""
        try:
            await self._redis.ping()
        except (RedisError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self._redis.aclose()
