"""Time to render `/metrics` with 10k and 100k series.

The series come from realistic gateway events (request and token policy
decisions, token reports, some 429s) for users x models until the wanted
count is reached. For reference the same counters are also rendered by
`prometheus_client.generate_latest` (which the project cannot use for the
contract: it appends `_total` and `_created`), to show what the
hand-written exposition costs against the usual library.

Run: .venv/bin/python benchmarks/bench_metrics_render.py
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from rich.progress import Progress

import benchlib
from maas_metrics.telemetry import GatewayMetrics, render

MODELS = ("granite-8b", "llama-3-8b", "mistral-7b", "qwen-7b", "phi-3")
TIERS = ("free", "premium", "enterprise")
REQ_NS, TOK_NS = "maas/requests", "maas/tokens"


def series_count(metrics: GatewayMetrics) -> int:
    return sum(len(f) for f in metrics.families())


def populate(target: int) -> GatewayMetrics:
    """Feed gateway events for user x model pairs until at least `target` series exist."""
    metrics = GatewayMetrics()
    i = 0
    while series_count(metrics) < target:
        user, model = f"user-{i // len(MODELS):06d}", MODELS[i % len(MODELS)]
        tier = TIERS[i % len(TIERS)]
        metrics.authorized(REQ_NS, (user, tier), model, 1)
        metrics.authorized(TOK_NS, (user, tier), model, 0)
        metrics.reported(TOK_NS, (user, tier), model, 30 + i % 7, 50 + i % 11, 80 + i % 18)
        if i % 10 == 0:
            metrics.limited(REQ_NS, (user, tier), model, f"{tier}-requests")
        i += 1
    return metrics


def as_prometheus_client(metrics: GatewayMetrics) -> CollectorRegistry:
    """The same counter series in a prometheus_client registry (reference only)."""
    registry = CollectorRegistry()
    for family in metrics.families():
        if family.kind != "counter" or not family.labels:
            continue
        name = family.name.removesuffix("_total")
        counter = Counter(name, family.help, list(family.labels), registry=registry)
        for key, value in family._values.items():
            counter.labels(*key).inc(value)
    return registry


def timed(fn: Callable[[], bytes], repeats: int) -> tuple[float, int]:
    """Median seconds of `repeats` calls (GC paused, as it would be noise), and output bytes."""
    times: list[float] = []
    size = 0
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            size = len(fn())
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return benchlib.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    info = benchlib.RunInfo.begin(".venv/bin/python benchmarks/bench_metrics_render.py")
    rows: list[list[str]] = []
    with Progress(console=benchlib.console) as progress:
        task = progress.add_task("render", total=4)
        for target in (10_000, 100_000):
            progress.update(task, description=f"populate {target:,} series")
            metrics = populate(target)
            families = metrics.families()
            progress.update(task, description=f"render {target:,} series")
            ours, size = timed(lambda f=families: render(f), args.repeats)  # type: ignore[misc]
            progress.advance(task)
            progress.update(task, description=f"prometheus_client {target:,} series")
            registry = as_prometheus_client(metrics)
            theirs, their_size = timed(lambda r=registry: generate_latest(r), args.repeats)  # type: ignore[misc]
            progress.advance(task)
            rows.append(
                [
                    f"{series_count(metrics):,}",
                    benchlib.fmt_ms(ours),
                    f"{size / 1e6:.1f} MB",
                    f"{series_count(metrics) / ours / 1e6:.2f} M",
                    benchlib.fmt_ms(theirs),
                    f"{their_size / 1e6:.1f} MB",
                    f"{theirs / ours:.1f}x",
                ]
            )
    info.end()
    headers = [
        "series",
        "render (median)",
        "body",
        "series/s",
        "prometheus_client",
        "its body",
        "ours faster by",
    ]
    benchlib.print_table("/metrics render time", headers, rows)
    body = (
        "## `/metrics` render time\n\n"
        "`telemetry.render(GatewayMetrics.families())`, the body the gateway serves on "
        "`GET /metrics`, median of "
        f"{args.repeats} renders with the GC paused. Series come from realistic gateway events "
        "(both policies' calls and hits, prompt/completion token counters, a 429 for every "
        "tenth user-model pair) for users x 5 models. Reference: the same counter series "
        "(all but the two health gauges) rendered by prometheus_client's "
        "`generate_latest`, which also writes a `_created` sample per series (so its body is "
        "bigger and its output is not Limitador-compatible).\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("render", body)


if __name__ == "__main__":
    main()
