"""Query time of the compensated panels (increase_exact) next to the plain increase()/rate() ones.

Same data set as bench_dashboard_queries.py (USERS users x 3 models x 2
namespaces, HOURS hours every 15 s with one counter reset, backfilled into the
real Prometheus with promtool), same Grafana-exact expansion and timing (a
panel's time is the sum of its targets' medians over --repeat runs), default
view: every filter "All", last 1 hour. Two catalogues are measured one after
the other in the same run on the same TSDB: "plain" is the catalogue with the
counting function swapped for bare `increase()` (what the panels sent before
this change; rates were `rate()`, which costs the same as `increase()`),
"exact" is the catalogue as shipped. Raw counters only: the recording-rule
panels keep their shape (`sum_over_time`), the rules themselves changed.

Run: .venv/bin/python benchmarks/bench_exact_queries.py [--users 10000 --hours 6 --repeat 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

import benchlib
from bench_dashboard_queries import BLOCK, CONFIG, DataSet, build_tsdb, fmt, measure
from maas_metrics.config import load_config
from maas_metrics.dashboard import promql as dashboard_promql
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess

RESULTS = benchlib.RESULTS / "query-exact.md"
PRICE_DAY = date(2025, 6, 1)


def plain_increase(series: str, window: str) -> str:
    return f"increase({series}[{window}])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "maas-bench-query-exact"
    )
    args = parser.parse_args()
    command = (
        ".venv/bin/python benchmarks/bench_exact_queries.py"
        f" --users {args.users} --hours {args.hours} --repeat {args.repeat}"
    )
    info = benchlib.RunInfo.begin(command)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    marker = args.data_dir / "raw.ready"
    start = (
        json.loads(marker.read_text())["start"]
        if marker.exists()
        else (int(time.time()) // BLOCK) * BLOCK - args.hours * 3600
    )
    data = DataSet(args.users, args.hours, start)

    config = load_config(CONFIG)
    exact = build_catalogue(config, price_date=PRICE_DAY)
    namespace = vars(dashboard_promql)  # the catalogue's counting function, swapped for a moment
    shipped = namespace["increase_exact"]
    namespace["increase_exact"] = plain_increase
    try:
        plain = build_catalogue(config, price_date=PRICE_DAY)
    finally:
        namespace["increase_exact"] = shipped
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TimeElapsedColumn())
    prometheus = PrometheusProcess(args.data_dir, retention="3650d")
    with Progress(*columns, console=benchlib.console) as progress:
        build_tsdb(data, args.data_dir, progress)
        prometheus.start(timeout=600)
        try:
            with PrometheusAPI(prometheus.url, timeout=600) as api:
                before, _ = measure(api, plain, data.end, args.repeat, progress, "plain")
                after, _ = measure(api, exact, data.end, args.repeat, progress, "exact")
        finally:
            prometheus.stop()
    info.end()

    headers = ["Panel", "plain increase()/rate()", "increase_exact", "ratio"]
    rows = []
    for panel in exact.panels:
        b, a = before[panel.key], after[panel.key]
        ratio = f"{a.seconds / b.seconds:.1f}x" if a.seconds and b.seconds else "-"
        rows.append([panel.title, fmt(b), fmt(a), ratio])
    title = f"{args.users:,} users x {args.hours} h, last 1 h, All (raw counters)"
    benchlib.print_table(title, headers, rows)
    lines = [
        "# query-exact: cost of the compensated panels",
        "",
        f"{title}.",
        "",
        info.markdown(),
        benchlib.markdown_table(headers, rows),
        "",
    ]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
