"""What a monthly budget costs per request: the gateway's metering path with and without one.

Per request, as `gateway/app.py` runs it: without a budget `Meter.admit` +
`Meter.report`; with one `Meter.admit` carrying the budget check (in the
same store operation: the `A` script on Redis) + `Budgets.verdict` +
`Meter.report` and `Budgets.charge`
(`Budgets.with_report`: on Redis issued together, so they share one batched
script call). 16 concurrent
callers, uvloop, no HTTP (the HTTP cost is the same with or without a
budget). Memory and a real `redis-server`; targets interleaved per round,
the first round dropped as warm-up; each figure is the median.

Run: .venv/bin/python benchmarks/bench_budgets.py [--rounds 5 --seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

import benchlib
from bench_gateway_overhead import BENCH_KEY, BODY, gateway_config
from maas_metrics.config import parse_config
from maas_metrics.gateway.app import Gateway
from maas_metrics.gateway.metering import Usage

CONCURRENCY = 16
RESULTS = benchlib.ROOT / "benchmarks" / "results" / "quotas.md"


async def rate(storage: str, budget: bool, seconds: float) -> float:
    """Requests/s through the metering path of `gateway/app.py`, 16 concurrent callers."""
    config = gateway_config("http://127.0.0.1:9/v1", storage)
    tiers = config["tiers"]
    assert isinstance(tiers, list)
    if budget:  # far above what the run spends: every request is admitted and charged
        tiers[1]["budget"] = {"amount": 1e9, "unit": "usd"}
    gateway = Gateway(parse_config(config))
    identity = gateway.keys.authenticate(f"Bearer {BENCH_KEY}")
    payload = orjson.loads(BODY)
    usage = Usage(40, 60, 100)
    done = 0
    deadline = time.perf_counter() + seconds

    async def with_budget() -> None:
        budget = gateway.budgets.check_for(identity)
        admission = await gateway.meter.admit(identity, "granite-8b", payload, budget)
        admission.budget_headers.update(gateway.budgets.verdict(identity, admission.budget))
        report = gateway.meter.report(identity, "granite-8b", usage, admission)
        together = gateway.storage_kind != "memory"
        await gateway.budgets.with_report(report, identity, "granite-8b", usage, together)
        admission.headers()

    async def without() -> None:
        admission = await gateway.meter.admit(identity, "granite-8b", payload)
        await gateway.meter.report(identity, "granite-8b", usage, admission)
        admission.headers()

    one = with_budget if budget else without

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            for _ in range(32):
                await one()
            done += 32

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    await gateway.limiter.close()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    command = (
        f".venv/bin/python benchmarks/bench_budgets.py --rounds {args.rounds}"
        f" --seconds {args.seconds:g}"
    )
    info = benchlib.RunInfo.begin(command)
    targets = [(s, b) for s in ("memory", "redis") for b in (False, True)]
    rates: dict[tuple[str, bool], list[float]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-budgets-") as tmp:
        redis = benchlib.RedisServer(Path(tmp) / "redis")
        redis.workdir.mkdir()
        redis.start()
        try:
            for round_no in range(args.rounds + 1):
                shift = round_no % len(targets)
                for storage, budget in targets[shift:] + targets[:shift]:
                    url = "memory" if storage == "memory" else redis.url
                    value = uvloop.run(rate(url, budget, args.seconds))
                    if round_no:
                        rates[(storage, budget)].append(value)
        finally:
            redis.stop()
    info.end()
    median = {t: statistics.median(v) for t, v in rates.items()}
    headers = ["store", "budget", "requests/s (16 callers)", "µs each", "vs no budget"]
    rows = []
    for storage, budget in targets:
        value = median[(storage, budget)]
        rows.append(
            [
                storage,
                "usd, hard" if budget else "none",
                benchlib.fmt_rate(value),
                f"{1e6 / value:.1f}",
                f"{value / median[(storage, False)]:.2f}x",
            ]
        )
    benchlib.print_table("metering path with and without a monthly budget", headers, rows)
    body = (
        "## Monthly budgets: metering cost per request\n\n"
        + (__doc__ or "").split("\n\n")[1].replace("\n", " ")
        + "\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("quotas-budgets", body, RESULTS)


if __name__ == "__main__":
    main()
