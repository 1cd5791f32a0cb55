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

import asyncio
import statistics
import timeit
from pathlib import Path

import benchlib
from bench_gw_exact import THROUGHPUT_HEADERS, throughput
from maas_metrics.gateway.metering import Usage
from maas_metrics.gateway.timing import RequestTimer, TimedStore
from maas_metrics.limiter import InMemoryStore
from maas_metrics.telemetry import LatencyMetrics, render

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latency.md"
BASE_COMMIT = "11139f5"


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
    parser = benchlib.base_tree_parser(__doc__, rounds=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    command = benchlib.base_tree_command(
        BASE_COMMIT,
        "/tmp/latency-base",
        "bench_latency.py",
        f"--rounds {args.rounds} --seconds {args.seconds:g}",
    )
    run = benchlib.RunInfo.begin(command)
    rate_rows = throughput(args.base, args.rounds, args.seconds)
    headers = THROUGHPUT_HEADERS
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
