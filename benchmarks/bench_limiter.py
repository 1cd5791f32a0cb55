"""Limiter decisions per second: in memory and on a real Redis, one hot counter and many.

A "decision" is one `check_and_update` (the request policy). A "gateway
round" is what the gateway does per admitted request with both policies on:
request `check_and_update`, token `check`, then token `report`; its rate is
rounds per second. Redis is measured with 1 and 32 concurrent callers,
since a real gateway overlaps many requests' round trips.

Run: .venv/bin/python benchmarks/bench_limiter.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

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
    operation: str  # "decision" | "gateway round"
    concurrency: int

    @property
    def label(self) -> str:
        users = "1 hot counter" if self.counters == "hot" else f"{MANY_USERS:,} counters"
        return f"{self.store}, {users}, {self.operation}, c={self.concurrency}"


def cases() -> list[Case]:
    out: list[Case] = []
    for store, concurrencies in (("memory", (1,)), ("redis", (1, 32))):
        for counters in ("hot", "many"):
            for operation in ("decision", "gateway round"):
                for concurrency in concurrencies:
                    out.append(Case(store, counters, operation, concurrency))
    return out


def operation(limiter: RateLimiter, name: str) -> Callable[[str], Awaitable[None]]:
    async def decision(user: str) -> None:
        await limiter.check_and_update(REQUESTS, user)

    async def gateway_round(user: str) -> None:
        await limiter.check_and_update(REQUESTS, user)
        await limiter.check(TOKENS, user)
        await limiter.report(TOKENS, user, 42)

    return decision if name == "decision" else gateway_round


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


async def main_async(seconds: float) -> list[tuple[Case, float]]:
    results: list[tuple[Case, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        redis_server = benchlib.RedisServer(Path(workdir))
        redis_server.start()
        try:
            all_cases = cases()
            with Progress(console=benchlib.console) as progress:
                task = progress.add_task("limiter", total=len(all_cases))
                for case in all_cases:
                    progress.update(task, description=case.label)
                    if case.store == "memory":
                        limiter = RateLimiter(InMemoryStore())
                    else:
                        limiter = RateLimiter(RedisStore(redis_server.url, timeout_seconds=5))
                    # Warm-up: load the Lua scripts, open connections, create the counters once.
                    await measure(limiter, case, min(0.3, seconds))
                    done, elapsed = await measure(limiter, case, seconds)
                    await limiter.close()
                    results.append((case, done / elapsed))
                    progress.advance(task)
        finally:
            redis_server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per case")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/bench_limiter.py" + (
        f" --seconds {args.seconds:g}" if args.seconds != 2.0 else ""
    )
    info = benchlib.RunInfo.begin(command)
    results = uvloop.run(main_async(args.seconds))
    info.end()

    headers = ["store", "counters", "operation", "callers", "per second", "µs each"]
    rows = [
        [
            case.store,
            "1 hot" if case.counters == "hot" else f"{MANY_USERS:,}",
            case.operation,
            str(case.concurrency),
            benchlib.fmt_rate(rate),
            f"{1e6 / rate:.1f}",
        ]
        for case, rate in results
    ]
    benchlib.print_table("Limiter decisions per second", headers, rows)
    body = (
        "## Limiter decisions per second\n\n"
        "`RateLimiter` alone (no HTTP), uvloop, one process. *decision* = one request-policy "
        "`check_and_update`; *gateway round* = what the gateway does per admitted request with "
        "both policies on (request `check_and_update` + token `check` + token `report`). "
        f"*many* = {MANY_USERS:,} distinct counters visited round-robin. Redis is a real "
        "`redis-server` 7 on 127.0.0.1 (Lua scripts, one round trip per operation) sharing the "
        "2 cores with the benchmark; *callers* = concurrent asyncio tasks. "
        "µs each = 1 / rate (for concurrent callers this is throughput, not latency).\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("limiter", body)


if __name__ == "__main__":
    main()
