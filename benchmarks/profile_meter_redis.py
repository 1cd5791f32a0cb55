"""Where the Redis path's CPU goes in process: `Meter.admit` + `Meter.report` under cProfile.

The gateway's metering alone (no HTTP, no upstream), 16 concurrent callers
on a real redis-server, profiled with cProfile twice, interleaved: commands
packed by hiredis (the store's default) and by redis-py's own Python
packer. Prints the time spent packing commands, the socket writes to Redis
and the whole run, and the top functions by own time.

Run: .venv/bin/python benchmarks/profile_meter_redis.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis
import uvloop

import benchlib
from bench_gateway_overhead import BENCH_KEY, BODY, gateway_config
from maas_metrics.config import parse_config
from maas_metrics.gateway.app import Gateway
from maas_metrics.gateway.metering import Usage
from maas_metrics.limiter.redis import RedisStore

CALLERS = 16


async def metering(url: str, seconds: float, hiredis: bool) -> int:
    """Admit + report for `seconds` with 16 callers; the number of requests done."""
    gateway = Gateway(parse_config(gateway_config("http://127.0.0.1:9/v1", url)))
    if not hiredis:  # measuring only: redis-py's own connection class packs in Python
        store = gateway.limiter.store.store  # type: ignore[attr-defined]
        assert isinstance(store, RedisStore)
        store._redis.connection_pool.connection_class = aioredis.Connection
    identity = gateway.keys.authenticate(f"Bearer {BENCH_KEY}")
    payload = orjson.loads(BODY)
    usage = Usage(40, 60, 100)
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            admission = await gateway.meter.admit(identity, "granite-8b", payload)
            await gateway.meter.report(identity, "granite-8b", usage, admission)
            done += 1

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    await gateway.limiter.close()
    return done


def cumulative(stats: pstats.Stats, fragment: str) -> float:
    """The largest cumulative seconds of the functions named `fragment`."""
    table = stats.stats  # type: ignore[attr-defined]
    return max((entry[3] for (_, _, name), entry in table.items() if fragment == name), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-meter-") as tmp:
        redis = benchlib.RedisServer(Path(tmp))
        redis.start()
        try:
            for hiredis in (True, False, True, False):  # interleaved; the first pair warms up
                profile = cProfile.Profile()
                profile.enable()
                started = time.perf_counter()
                done = uvloop.run(metering(redis.url, args.seconds, hiredis))
                elapsed = time.perf_counter() - started
                profile.disable()
                stats = pstats.Stats(profile)
                packing = cumulative(stats, "pack_command")  # hiredis's `pack` runs inside
                writes = cumulative(stats, "writelines")
                name = "hiredis" if hiredis else "Python"
                print(
                    f"{name:8s} {done / elapsed:9,.0f} req/s under cProfile; of {elapsed:.2f} s:"
                    f" packing {packing:.3f} s, socket writes to Redis {writes:.3f} s"
                )
                stats.sort_stats("tottime").print_stats(8)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
