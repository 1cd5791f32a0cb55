"""Limiter decisions per second: in memory and on a real Redis, one hot counter and many.

Side by side in one run: the previous path (one script per policy operation:
`check_and_update`, `check`, `report`) and the combined one (`admit`: both
policies in one script; `settle`: the report or a reservation's commit), in
optimistic and reservation mode, batched or not, and the Redis connection
pool sizes. Redis
is measured with 1, 32 and 128 concurrent callers, since a real gateway
overlaps many requests' round trips.

Run: .venv/bin/python benchmarks/bench_limiter.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import uvloop
from rich.progress import Progress

import benchlib
from maas_metrics.limiter import InMemoryStore, Limit, RateLimiter
from maas_metrics.limiter.redis import RedisStore

MANY_USERS = 100_000
REQUESTS = Limit(namespace="maas/requests", name="bench-requests", max_value=10**12, seconds=3600)
TOKENS = Limit(namespace="maas/tokens", name="bench-tokens", max_value=10**12, seconds=3600)


@dataclass(frozen=True)
class Case:
    store: str  # "memory" | "redis"
    counters: str  # "hot" | "many"
    operation: str  # a key of OPERATIONS
    concurrency: int
    pool: int = 1  # Redis connections (= batched script calls in flight; the store's default)
    batch: bool = True  # Redis: the operations of one loop turn in one script call (batch)
    hiredis: bool = True  # Redis: commands packed by hiredis (False: redis-py's Python packer)

    @property
    def label(self) -> str:
        users = "1 hot counter" if self.counters == "hot" else f"{MANY_USERS:,} counters"
        pool = f", pool={self.pool}, batch={self.batch}" if self.store == "redis" else ""
        if not self.hiredis:
            pool += ", Python packing"
        return f"{self.store}, {users}, {self.operation}, c={self.concurrency}{pool}"


# What each operation does, in store round trips:
OPERATIONS = {
    "decision": "request `check_and_update` (1)",
    "admission before": "request `check_and_update` + token `check` (2)",
    "admission": "`admit`: both policies in one script (1)",
    "round before": "`check_and_update` + `check` + `report` (3)",
    "round optimistic": "`admit` + `settle` (report) (2)",
    "round reservation": "`admit` with a 42-token hold + `settle` (commit) (2)",
}


def cases() -> list[Case]:
    out: list[Case] = []
    for counters in ("hot", "many"):
        for name in OPERATIONS:
            out.append(Case("memory", counters, name, 1))
            out.append(Case("redis", counters, name, 1))
            out.append(Case("redis", counters, name, 32, batch=False))
            out.append(Case("redis", counters, name, 32))
    # Connection pool sizing (= batched script calls in flight): 16 and 128 callers.
    for callers in (16, 128):
        for pool in (1, 2, 4, 8, 32, 128):
            out.append(Case("redis", "many", "round optimistic", callers, pool))
    # Packing the batch's command: hiredis (the default) against redis-py's Python packer.
    for name in ("admission", "round optimistic"):
        out.append(Case("redis", "many", name, 32, hiredis=False))
        out.append(Case("redis", "many", name, 32, pool=8, hiredis=False))
    return out


def operation(limiter: RateLimiter, name: str) -> Callable[[str], Awaitable[None]]:
    async def decision(user: str) -> None:
        await limiter.check_and_update(REQUESTS, user)

    async def admission_before(user: str) -> None:
        await limiter.check_and_update(REQUESTS, user)
        await limiter.check(TOKENS, user)

    async def admission(user: str) -> None:
        await limiter.admit(REQUESTS, TOKENS, user)

    async def round_before(user: str) -> None:
        await limiter.check_and_update(REQUESTS, user)
        await limiter.check(TOKENS, user)
        await limiter.report(TOKENS, user, 42)

    async def round_optimistic(user: str) -> None:
        await limiter.admit(REQUESTS, TOKENS, user)
        await limiter.settle(TOKENS, user, 42)

    async def round_reservation(user: str) -> None:
        admitted = await limiter.admit(REQUESTS, TOKENS, user, 42, 60.0)
        await limiter.settle(TOKENS, user, 42, admitted.reservation)

    return {
        "decision": decision,
        "admission before": admission_before,
        "admission": admission,
        "round before": round_before,
        "round optimistic": round_optimistic,
        "round reservation": round_reservation,
    }[name]


async def measure(limiter: RateLimiter, case: Case, seconds: float) -> tuple[int, float]:
    """Run `case` for about `seconds`; return (operations done, elapsed seconds)."""
    users = ["hot-user"] if case.counters == "hot" else [f"user-{i}" for i in range(MANY_USERS)]
    run = operation(limiter, case.operation)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        n = len(users)
        while True:
            for _ in range(64):
                await run(users[i % n])
                i += case.concurrency
            done += 64
            if time.perf_counter() >= deadline:
                return

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(case.concurrency)))
    return done, time.perf_counter() - start


async def main_async(seconds: float, rounds: int) -> list[tuple[Case, float]]:
    """Every case once per round, rounds interleaved (the machine is shared); median per case."""
    rates: dict[Case, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        redis_server = benchlib.RedisServer(Path(workdir))
        redis_server.start()
        try:
            all_cases = cases() * rounds
            with Progress(console=benchlib.console) as progress:
                task = progress.add_task("limiter", total=len(all_cases))
                for case in all_cases:
                    progress.update(task, description=case.label)
                    if case.store == "memory":
                        limiter = RateLimiter(InMemoryStore())
                    else:
                        store = RedisStore(
                            redis_server.url,
                            timeout_seconds=5,
                            max_connections=case.pool,
                            batch=case.batch,
                        )
                        if not case.hiredis:  # measuring only: redis-py's own connection class
                            store._redis.connection_pool.connection_class = aioredis.Connection
                        limiter = RateLimiter(store)
                    # Warm-up: load the Lua scripts, open connections, create the counters once.
                    await measure(limiter, case, min(0.3, seconds))
                    done, elapsed = await measure(limiter, case, seconds)
                    await limiter.close()
                    rates.setdefault(case, []).append(done / elapsed)
                    progress.advance(task)
        finally:
            redis_server.stop()
    return [(case, statistics.median(values)) for case, values in rates.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--out", default="benchmarks/results/limiter.md")
    args = parser.parse_args()
    command = (
        ".venv/bin/python benchmarks/bench_limiter.py"
        f" --seconds {args.seconds:g} --rounds {args.rounds} --out {args.out}"
    )
    info = benchlib.RunInfo.begin(command)
    results = uvloop.run(main_async(args.seconds, args.rounds))
    info.end()

    headers = [
        "store",
        "counters",
        "operation",
        "callers",
        "pool",
        "batch",
        "packing",
        "per second",
        "µs each",
    ]
    rows = [
        [
            case.store,
            "1 hot" if case.counters == "hot" else f"{MANY_USERS:,}",
            case.operation,
            str(case.concurrency),
            str(case.pool) if case.store == "redis" else "",
            ("yes" if case.batch else "no") if case.store == "redis" else "",
            ("hiredis" if case.hiredis else "Python") if case.store == "redis" else "",
            benchlib.fmt_rate(rate),
            f"{1e6 / rate:.1f}",
        ]
        for case, rate in results
    ]
    benchlib.print_table("Limiter decisions per second", headers, rows)
    body = (
        "## Limiter decisions per second\n\n"
        "`RateLimiter` alone (no HTTP), uvloop, one process. Operations (store round trips): "
        + "; ".join(f"*{name}* = {what}" for name, what in OPERATIONS.items())
        + ". *admission* is what the gateway now does before proxying, *round optimistic* / "
        "*round reservation* per answered request; *before* rows are the previous code path. "
        f"*many* = {MANY_USERS:,} distinct counters visited round-robin. Redis is a real "
        "`redis-server` 7 on 127.0.0.1 (Lua scripts, one round trip per operation) sharing the "
        "2 cores with the benchmark; *callers* = concurrent asyncio tasks. "
        "µs each = 1 / rate (for concurrent callers this is throughput, not latency). "
        "*batch* = the operations concurrent callers issue in one event-loop turn travel in one "
        "`EVALSHA` of the batch script (the default; *no* = one script call each); *pool* = "
        "Redis connections = batched calls in flight at once (later operations join the next "
        "call); *packing* = how the command is encoded (hiredis, or redis-py's Python code). "
        "Each figure is the median of the interleaved rounds.\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("limiter", body, path=benchlib.ROOT / args.out)


if __name__ == "__main__":
    main()
