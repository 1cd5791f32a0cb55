"""Time to render `/metrics` with 10k and 100k series.

The series come from realistic gateway events (request and token policy
decisions, token reports, some 429s) for users x models until the wanted
count is reached. For reference the same counters are also rendered by
`prometheus_client.generate_latest` (which the project cannot use for the
contract: it appends `_total` and `_created`), to show what the
hand-written exposition costs against the usual library.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_metrics_render.py
(results go to benchmarks/results/scale-rest.md)
"""

from __future__ import annotations

import argparse
import gc
import gzip
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from rich.progress import Progress

import benchlib
from maas_metrics.telemetry import GatewayMetrics, render
from maas_metrics.telemetry.exposition import BLOCK_SERIES, Exposition

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


def timed(
    fn: Callable[[], bytes], repeats: int, before: Callable[[], None] | None = None
) -> tuple[float, int]:
    """Median seconds of `repeats` calls (GC paused, as it would be noise), and output bytes.

    `before` runs ahead of each call, untimed (the traffic between two scrapes).
    """
    times: list[float] = []
    size = 0
    for _ in range(repeats):
        if before is not None:
            before()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            size = len(fn())
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return benchlib.median(times), size


def traffic(metrics: GatewayMetrics, fraction: float) -> Callable[[], None]:
    """Events between two scrapes touching `fraction` of the user x model pairs (spread out)."""
    pairs = series_count(metrics) // 8  # about 8 series per user-model pair
    touched = max(1, int(pairs * fraction))
    stride = max(1, pairs // touched)
    rounds = [0]

    def feed() -> None:
        rounds[0] += 1
        for j in range(touched):
            i = (j * stride + rounds[0]) % pairs
            user, model = f"user-{i // len(MODELS):06d}", MODELS[i % len(MODELS)]
            tier = TIERS[i % len(TIERS)]
            metrics.authorized(REQ_NS, (user, tier), model, 1)
            metrics.reported(TOK_NS, (user, tier), model, 3, 5, 8)

    return feed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--changed",
        type=float,
        default=0.01,
        help="fraction of user-model pairs changed per scrape",
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--out", default=str(benchlib.RESULTS / "scale-rest.md"))
    args = parser.parse_args()
    command = (
        "PYTHONPATH=src .venv/bin/python benchmarks/bench_metrics_render.py "
        f"--repeats {args.repeats} --changed {args.changed}"
    )
    info = benchlib.RunInfo.begin(command)
    rows: list[list[str]] = []
    sizes = [int(size) for size in args.sizes.split(",")]
    with Progress(console=benchlib.console) as progress:
        task = progress.add_task("render", total=len(sizes))
        for target in sizes:
            progress.update(task, description=f"{target:,} series")
            metrics = populate(target)
            count = series_count(metrics)
            families = metrics.families()
            render(families)  # every series past its born-at-zero scrape
            uncached, size = timed(lambda f=families: render(f), args.repeats)  # type: ignore[misc]
            level6, gz6 = timed(
                lambda f=families: gzip.compress(render(f), compresslevel=6),  # type: ignore[misc]
                args.repeats,
            )
            exposition = Exposition(families)
            exposition.scrape()
            same, _ = timed(exposition.scrape, args.repeats)
            same_gz, gz_size = timed(lambda e=exposition: e.scrape(gzip=True), args.repeats)  # type: ignore[misc]
            feed = traffic(metrics, args.changed)
            changed, _ = timed(exposition.scrape, args.repeats, feed)
            changed_gz, _ = timed(lambda e=exposition: e.scrape(gzip=True), args.repeats, feed)  # type: ignore[misc]
            theirs, their_size = timed(
                lambda r=as_prometheus_client(metrics): generate_latest(r),  # type: ignore[misc]
                args.repeats,
            )
            rows.append(
                [
                    f"{count:,}",
                    f"{size / 1e6:.1f} MB",
                    benchlib.fmt_ms(uncached),
                    benchlib.fmt_ms(same),
                    f"{uncached / same:.0f}x",
                    benchlib.fmt_ms(changed),
                    f"{uncached / changed:.1f}x",
                    f"{gz_size / 1e6:.2f} MB ({size / gz_size:.0f}x smaller)",
                    benchlib.fmt_ms(level6),
                    benchlib.fmt_ms(same_gz),
                    benchlib.fmt_ms(changed_gz),
                    f"{level6 / changed_gz:.1f}x",
                    f"{gz6 / 1e6:.2f} MB",
                    benchlib.fmt_ms(theirs),
                    f"{their_size / 1e6:.1f} MB",
                ]
            )
            progress.advance(task)
    info.end()
    headers = [
        "series",
        "body",
        "uncached render",
        "cached, nothing changed",
        "ratio",
        f"cached, {args.changed:.0%} of pairs changed",
        "ratio",
        "gzip body (cached, level 1)",
        "uncached + gzip level 6",
        "cached gzip, nothing changed",
        f"cached gzip, {args.changed:.0%} changed",
        "ratio vs uncached+gzip 6",
        "gzip level 6 body",
        "prometheus_client (reference)",
        "its body",
    ]
    benchlib.print_table("/metrics render time", headers, rows)
    body = (
        "## `/metrics` render: uncached vs cached, gzip on/off\n\n"
        "Medians of "
        f"{args.repeats} scrapes with the GC paused. Series come from realistic gateway events "
        "(both policies' calls and hits, prompt/completion token counters, a 429 for every "
        "tenth user-model pair) for users x 5 models. *Uncached* is `telemetry.render` (every "
        "line formatted anew, the render before this branch); *cached* is "
        "`telemetry.exposition.Exposition.scrape`, which the gateway now serves: only blocks of "
        f"{BLOCK_SERIES} series holding a changed series are re-formatted (and re-deflated for "
        f"gzip). *Changed*: between two scrapes, {args.changed:.0%} of the user-model pairs get "
        "a request and a token report (spread over the whole body, the worst case for blocks; "
        "feeding them is not timed). gzip is what the gateway sends when Prometheus asks "
        "(`Accept-Encoding: gzip`); the uncached + `gzip.compress(level 6)` column is what a "
        "stock gzip middleware would cost. prometheus_client's `generate_latest` of the same "
        "counters is a reference only (its output is not Limitador-compatible).\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    out = Path(args.out)
    benchlib.update_section("render", body, out)


if __name__ == "__main__":
    main()
