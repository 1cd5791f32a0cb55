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

With `--gateway`, also whole gateways at c=16 (`wrk`, one thread, 16
keep-alive connections, POST /v1/chat/completions against one mock model
process; the bench key's tier without and with a budget far above the
load, memory and Redis; interleaved rounds, the first dropped, medians).

Run: .venv/bin/python benchmarks/bench_budgets.py [--rounds 5 --seconds 2 --gateway]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import orjson
import uvloop
import yaml

import benchlib
from bench_gateway_overhead import BENCH_KEY, BODY, gateway_config, maas_cli, script
from maas_metrics.config import parse_config
from maas_metrics.gateway.app import Gateway
from maas_metrics.gateway.metering import Usage
from services import Service
from wrkload import require_wrk, run_wrk

CONCURRENCY = 16
RESULTS = benchlib.ROOT / "benchmarks" / "results" / "quotas.md"


async def rate(storage: str, budget: bool, seconds: float) -> float:
    """Requests/s through the metering path of `gateway/app.py`, 16 concurrent callers."""
    gateway = Gateway(parse_config(budget_config("http://127.0.0.1:9/v1", storage, budget)))
    identity = gateway.keys.authenticate(f"Bearer {BENCH_KEY}")
    payload = orjson.loads(BODY)
    usage = Usage(40, 60, 100)

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

    measured = await benchlib.calls_per_second(
        with_budget if budget else without, seconds, CONCURRENCY
    )
    await gateway.limiter.close()
    return measured


def budget_config(upstream: str, storage: str, budget: bool) -> dict[str, object]:
    """The overhead benchmark's config; with `budget`, one far above what a run spends."""
    config = gateway_config(upstream, storage)
    tiers = config["tiers"]
    assert isinstance(tiers, list)
    if budget:  # every request is admitted and charged
        tiers[1]["budget"] = {"amount": 1e9, "unit": "usd"}
    return config


def gateway_rates(rounds: int, seconds: float, redis_url: str, workdir: Path) -> dict[str, float]:
    """Median req/s of whole gateways (wrk, c=16): memory/Redis x no budget/budget."""
    require_wrk()
    mock = benchlib.mock_model(workdir)
    names = [f"{s} {b}" for s in ("memory", "redis") for b in ("none", "budget")]
    services: dict[str, Service] = {}
    for name in names:
        store, budget = name.split()
        config = budget_config(
            f"{mock.url}/v1", "memory" if store == "memory" else redis_url, budget == "budget"
        )
        path = workdir / f"{name.replace(' ', '-')}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = benchlib.free_port()
        argv = [maas_cli(), "gateway", "--config", str(path), "--port", str(port)]
        argv += ["--operator-port", str(benchlib.free_port())]
        services[name] = Service(name, argv, port, "/healthz", workdir / f"{port}.log")
    runs: dict[str, list[float]] = {name: [] for name in names}
    with benchlib.running(mock, *services.values()):
        for round_no in range(rounds + 1):
            for name in benchlib.rotated(names, round_no):
                url = services[name].url + "/v1/chat/completions"
                result = run_wrk(url, script(BENCH_KEY), CONCURRENCY, seconds)
                if result.non_2xx or result.socket_errors or not result.requests:
                    raise SystemExit(f"error: {name} failed: {result}")
                if round_no:
                    runs[name].append(result.requests / result.seconds)
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--gateway", action="store_true", help="also whole gateways with wrk")
    args = parser.parse_args()
    command = (
        f".venv/bin/python benchmarks/bench_budgets.py --rounds {args.rounds}"
        f" --seconds {args.seconds:g}" + (" --gateway" if args.gateway else "")
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
            gateways = (
                gateway_rates(args.rounds, args.seconds, redis.url, Path(tmp))
                if args.gateway
                else {}
            )
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
    )
    if gateways:
        g_headers = ["gateway (wrk, c=16)", "req/s", "vs no budget"]
        g_rows = [
            [name, benchlib.fmt_rate(rps), f"{rps / gateways[name.split()[0] + ' none']:.2f}x"]
            for name, rps in gateways.items()
        ]
        benchlib.print_table("whole gateways", g_headers, g_rows)
        body += (
            "\n"
            + (__doc__ or "").split("\n\n")[2].replace("\n", " ")
            + "\n\n"
            + benchlib.markdown_table(g_headers, g_rows)
        )
    body += "\n" + info.markdown()
    benchlib.update_section("quotas-budgets", body, RESULTS)


if __name__ == "__main__":
    main()
