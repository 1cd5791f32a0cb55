"""What the latency histograms cost: gateway req/s and CPU per request, base vs this tree, side by side.

1. Gateway throughput at concurrency 16: the base commit's gateway (no latency
   histograms) and this tree's (request duration, time to first token, time
   per output token, token usage by type, datastore_latency around every
   counter-store call serving a request, upstream error counter) against ONE mock model,
   interleaved: every round visits both in rotated order, JSON answers and
   SSE streams; the figure is the median over rounds, and the ratio
   this tree / base. The gateway's own CPU time per request (from /proc) is
   the steadier figure on a loaded machine.
2. The histogram's hot path alone: `Histogram.observe` on an existing series,
   and the `/metrics` render of the latency families at 50 models x 10 tiers.

Run (the base tree is the commit before this branch, unpacked once):
    mkdir -p /tmp/latency-base && git archive 11139f5 | tar -x -C /tmp/latency-base
    PYTHONPATH=src .venv/bin/python benchmarks/bench_latency.py --base /tmp/latency-base [--rounds 6 --seconds 4]
Writes benchmarks/results/latency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import uvloop

import benchlib
from bench_gw_exact import JSON_BODY, KEY, STREAM_BODY, cpu_seconds, write_config
from maas_metrics.gateway.metering import Usage
from maas_metrics.gateway.timing import RequestTimer, TimedStore
from maas_metrics.limiter import InMemoryStore
from maas_metrics.simulate.loadgen import run_load
from maas_metrics.telemetry import LatencyMetrics, render
from services import Service

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latency.md"
BASE_COMMIT = "11139f5"


def gateway(name: str, src: Path, config: Path, log: Path) -> Service:
    """`maas-metrics gateway` from the source tree `src`, API and operator listener on free ports."""
    port, operator = benchlib.free_port(), benchlib.free_port()
    argv = [sys.executable, "-m", "maas_metrics", "gateway", "--config", str(config)]
    argv += ["--port", str(port), "--operator-port", str(operator)]
    return Service(name, argv, port, "/healthz", log, env={"PYTHONPATH": str(src)})


def throughput(base: Path, rounds: int, seconds: float) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mock_port = benchlib.free_port()
        mock = Service(
            "mock",
            [sys.executable, "-m", "maas_metrics", "mock-model", "--port", str(mock_port)],
            mock_port,
            "/healthz",
            work / "mock.log",
            env={"PYTHONPATH": str(ROOT / "src")},
        )
        config = write_config(work, mock_port)
        targets = {
            "base": gateway("base", base / "src", config, work / "base.log"),
            "this branch": gateway("new", ROOT / "src", config, work / "new.log"),
        }
        services = [mock, *targets.values()]
        rates: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        try:
            for service in services:
                service.start()
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            for r in range(rounds):
                names = list(targets)
                names = names[r % 2 :] + names[: r % 2]
                for kind, body in (("JSON", JSON_BODY), ("stream", STREAM_BODY)):
                    for name in names:
                        url = f"{targets[name].url}/v1/chat/completions"
                        before = cpu_seconds(targets[name])
                        result = uvloop.run(run_load(url, 16, seconds, body, headers))
                        used = cpu_seconds(targets[name]) - before
                        assert result.errors == 0, (name, kind, result.summary())
                        rates.setdefault((kind, name), []).append(result.rate)
                        cpu.setdefault((kind, name), []).append(used / result.requests)
        finally:
            for service in reversed(services):
                service.stop()
    rows = []
    for kind in ("JSON", "stream"):
        old = statistics.median(rates[(kind, "base")])
        new = statistics.median(rates[(kind, "this branch")])
        old_cpu = statistics.median(cpu[(kind, "base")])
        new_cpu = statistics.median(cpu[(kind, "this branch")])
        rows.append(
            [
                kind,
                f"{old:,.0f}",
                f"{new:,.0f}",
                f"{new / old:.3f}",
                f"{old_cpu * 1e6:.0f}",
                f"{new_cpu * 1e6:.0f}",
                f"{new_cpu / old_cpu:.3f}",
            ]
        )
    return rows


def hot_path(models: int = 50, tiers: int = 10) -> list[list[str]]:
    """ns per observation on an existing series, and the render of every latency family."""
    metrics = LatencyMetrics()
    for m in range(models):
        for t in range(tiers):
            key = (f"model-{m}", f"tier-{t}", "chat")
            metrics.request_duration.observe((*key, ""), 0.3)
            metrics.time_to_first_token.observe(key, 0.05)
            metrics.time_per_output_token.observe(key, 0.02)
            metrics.token_usage.observe((*key, "input"), 120)
            metrics.token_usage.observe((*key, "output"), 300)
    render(metrics.families())  # the first scrape reads new series at 0
    key = ("model-7", "tier-3", "chat")
    number = 200_000
    observe = min(
        timeit.repeat(
            lambda: metrics.time_to_first_token.observe(key, 0.05), number=number, repeat=5
        )
    )
    usage = Usage(120, 300, 420)

    def json_answer() -> None:
        RequestTimer(metrics, "model-7", "tier-3", "chat").answered(usage, streamed=False)

    def stream_answer() -> None:
        timer = RequestTimer(metrics, "model-7", "tier-3", "chat")
        timer.first_token()
        timer.answered(usage, streamed=True)

    timer_json = min(timeit.repeat(json_answer, number=number // 4, repeat=5)) / (number // 4)
    timer_stream = min(timeit.repeat(stream_answer, number=number // 4, repeat=5)) / (number // 4)
    plain, timed = store_call(InMemoryStore()), store_call(TimedStore(InMemoryStore(), metrics))
    size = len(render(metrics.families()))
    scrape = statistics.median(
        timeit.repeat(lambda: render(metrics.families()), number=1, repeat=5)
    )
    series = sum(len(f) for f in metrics.families())
    return [
        ["Histogram.observe, existing series", f"{observe / number * 1e9:.0f} ns", ""],
        ["RequestTimer of a JSON answer (4 observations)", f"{timer_json * 1e9:.0f} ns", ""],
        ["RequestTimer of a stream (5 observations)", f"{timer_stream * 1e9:.0f} ns", ""],
        [
            "in-memory store call, plain / timed (datastore_latency)",
            f"{plain * 1e9:.0f} / {timed * 1e9:.0f} ns",
            "",
        ],
        [
            f"render latency families, {models} models x {tiers} tiers ({series} series)",
            benchlib.fmt_ms(scrape),
            f"{size / 1e3:.0f} kB",
        ],
    ]


def store_call(store: InMemoryStore | TimedStore, number: int = 50_000) -> float:
    """Best seconds per `check_and_update` awaited in a loop (5 runs)."""

    async def calls() -> None:
        for _ in range(number):
            await store.check_and_update("user", 1, 10**12, 3_600_000)

    best = float("inf")
    for _ in range(5):
        began = timeit.default_timer()
        asyncio.run(calls())
        best = min(best, timeit.default_timer() - began)
    return best / number


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="source tree of the base commit")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    command = (
        f"mkdir -p /tmp/latency-base && git archive {BASE_COMMIT} | tar -x -C /tmp/latency-base"
        " && PYTHONPATH=src .venv/bin/python benchmarks/bench_latency.py --base /tmp/latency-base "
        f"--rounds {args.rounds} --seconds {args.seconds:g}"
    )
    run = benchlib.RunInfo.begin(command)
    rate_rows = throughput(args.base, args.rounds, args.seconds)
    headers = [
        "answers",
        "base req/s",
        "this branch req/s",
        "ratio",
        "base CPU µs/req",
        "this branch CPU µs/req",
        "CPU ratio",
    ]
    benchlib.print_table("Gateway at concurrency 16 (median of rounds)", headers, rate_rows)
    hot_rows = hot_path()
    hot_headers = ["operation", "time", "size"]
    benchlib.print_table("Histogram hot path", hot_headers, hot_rows)
    run.end()
    RESULTS.write_text(
        "# latency: what the latency histograms cost\n\n"
        + run.markdown()
        + f"\nGateway requests/s at concurrency 16, base commit {BASE_COMMIT} (no latency "
        "histograms) vs this branch, interleaved, median of "
        f"{args.rounds} rounds of {args.seconds:g} s (in-memory counters, mock model without "
        "latency, one model, one tier). The gateway's own CPU time per request (from /proc, the "
        "gateway process only) is the steadier figure on a shared machine:\n\n"
        + benchlib.markdown_table(headers, rate_rows)
        + "\nThe added work per request in-process (best of 5 runs; render median of 5):\n\n"
        + benchlib.markdown_table(hot_headers, hot_rows),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
