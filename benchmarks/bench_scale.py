"""Every dashboard panel and the usage report at 10,000 users x 5 models x 24 h of history.

Reuses the dashboard engineer's machinery in `bench_dashboard_queries.py`
(deterministic traffic, OpenMetrics generation + `promtool tsdb
create-blocks-from openmetrics`, recording rules backfilled with `promtool
tsdb create-blocks-from rules`, Grafana-exact query expansion and per-panel
timing), at this issue's scale: its model list, sample interval and view
range are set for this run. History: 24 h sampled every 30 s (so the
one-minute recording rules see every scrape), one counter reset half-way.

Measured, with raw counters and with recording rules: every panel and
variable for the views "last 1 h" and "last 24 h", and `report.build_report`
over the last 1 h and the whole 24 h, from the raw counters (windows that
Prometheus refuses are split) and from the per-user recording rules
(`--recording-rules`).

The TSDB (several GB of generation work) is kept in --data-dir and reused.
Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_scale.py (results: benchmarks/results/scale-rest.md)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

import bench_dashboard_queries as dq
import benchlib
import scale_rules
from maas_metrics.config import Config, load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Catalogue, Panel
from maas_metrics.prometheus import PrometheusAPI, PrometheusError, PrometheusProcess
from maas_metrics.report import ReportRequest, TimeRange, build_report
from maas_metrics.rules.recording import recording_rules

MODELS = ("granite-8b", "llama-3-8b", "mistral-7b", "qwen-2-7b", "phi-3-mini")
SCRAPE = 30
VIEWS = {"last 1 h": 3600, "last 24 h": 86400}
#: The views end this long before the history's end (a whole hour): their edges cut hours, on a
#: whole minute (the rules count whole minutes; at any other second the two differ by the
#: traffic of the seconds between the edge and its minute, which is not an error).
OFF_THE_HOUR = 1380
#: Only for building the rules (promtool's range queries over 210,000 series); measured with defaults.
BUILD_LIMITS = ("--query.max-samples=2000000000", "--query.timeout=1h")


def configure(view_seconds: int) -> None:
    """Point the shared machinery at this benchmark's data set and view."""
    dq.MODELS = MODELS  # type: ignore[assignment]  # five models instead of its three
    dq.SCRAPE = SCRAPE
    dq.VIEW_RANGE = view_seconds


BUILD_TIMES = "build-seconds.json"


def timed_build(data_dir: Path, part: str, build: Callable[[], None]) -> None:
    """Run a build step and record its seconds, unless it only reused what an earlier run built."""
    path = data_dir / BUILD_TIMES
    times = json.loads(path.read_text()) if path.exists() else {}
    began = time.perf_counter()
    build()
    seconds = time.perf_counter() - began
    if part not in times or seconds > 60:  # a reuse takes well under a minute
        times[part] = seconds
        path.write_text(json.dumps(times))


def time_report(
    api: PrometheusAPI, config: Config, start: int, end: int, repeat: int, rules: bool = False
) -> tuple[float | None, str, int]:
    """Median seconds of `build_report` over (start, end], its error, and its query count.

    `rules`: read the per-user recording rules (`--recording-rules`, one-minute grid).
    """
    request = ReportRequest(
        range=TimeRange(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)),
        resolution=60.0 if rules else float(SCRAPE),
        recording_rules=rules,
    )
    runs: list[float] = []
    queries = 0
    for _ in range(repeat):
        began = time.perf_counter()
        try:
            report = build_report(api, config, request)
        except PrometheusError as error:
            return None, str(error)[:120], queries
        runs.append(time.perf_counter() - began)
        queries = report.queries
    return benchlib.median(runs), "", queries


def quick_raw(panel: Panel) -> bool:
    """`--quick`: the raw panels still run: every range panel, and the per-user table."""
    return panel.key == "details" or any(not t.instant for t in panel.targets)


def time_rules(api: PrometheusAPI, at: int, repeat: int) -> list[list[str]]:
    """Each recording rule's evaluation, as the rule manager runs it once a minute (median s).

    `at` is in an hour's first minute, so the hour level's gate is open.
    """
    rows = []
    for rule in recording_rules():
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            found = api.query(str(rule["expr"]), time=at)
            runs.append(time.perf_counter() - began)
        rows.append([str(rule["record"]), f"{len(found):,}", f"{benchlib.median(runs):.2f} s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "maas-bench-scale",
        help="Where the TSDB is built and kept for later runs.",
    )
    parser.add_argument("--out", default=str(benchlib.RESULTS / "scale-rest.md"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="from the raw counters run only the range panels (refused or not) and the "
        "per-user table (for the rules-vs-raw comparison), and the raw report over 1 h only: "
        "each raw 24 h query takes 1-2 min here",
    )
    parser.add_argument(
        "--real-rules",
        action="store_true",
        help="evaluate the recording rules with promtool (hours at 10,000 users on 2 cores) "
        "instead of writing their series from the generator (scale_rules.py)",
    )
    args = parser.parse_args()
    command = (
        ".venv/bin/python benchmarks/bench_scale.py"
        + (f" --users {args.users}" if args.users != 10_000 else "")
        + (f" --hours {args.hours}" if args.hours != 24 else "")
    )
    configure(VIEWS["last 1 h"])
    args.data_dir.mkdir(parents=True, exist_ok=True)
    marker = args.data_dir / "raw.ready"
    start = (
        json.loads(marker.read_text())["start"]
        if marker.exists()
        else (int(time.time()) // dq.BLOCK * dq.BLOCK - args.hours * 3600)
    )
    data = dq.DataSet(args.users, args.hours, start)

    config = load_config(dq.CONFIG)
    catalogues = {
        "raw counters": build_catalogue(config, price_date=dq.PRICE_DAY),
        "recording rules": build_catalogue(config, recording_rules=True, price_date=dq.PRICE_DAY),
    }
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    ]
    prometheus = PrometheusProcess(args.data_dir, retention="3650d", extra_args=BUILD_LIMITS)
    panels: dict[tuple[str, str], dict[str, dq.Timing]] = {}
    variables: dict[tuple[str, str], dict[str, dq.Timing]] = {}
    reports: dict[tuple[str, str], tuple[float | None, str, int]] = {}
    values: dict[tuple[str, str], dq.Values] = {}
    rule_costs: list[list[str]] = []
    with Progress(*columns, console=benchlib.console) as progress:
        timed_build(args.data_dir, "raw", lambda: dq.build_tsdb(data, args.data_dir, progress))
        if not args.real_rules:
            task = progress.add_task("rule series from the generator + promtool", total=None)
            timed_build(args.data_dir, "rules", lambda: scale_rules.build(data, args.data_dir))
            progress.update(task, total=1, completed=1)
        task = progress.add_task("starting Prometheus", total=None)
        prometheus.start(timeout=900)
        progress.update(task, total=1, completed=1)
        try:
            if args.real_rules:
                timed_build(
                    args.data_dir, "rules", lambda: dq.build_rules(data, prometheus, progress)
                )
            build = json.loads((args.data_dir / BUILD_TIMES).read_text())
            prometheus.stop()  # measure with Prometheus's default limits
            prometheus.extra_args = ()
            prometheus.start(timeout=900)
            end = data.end - OFF_THE_HOUR
            info = benchlib.RunInfo.begin(command)
            with PrometheusAPI(prometheus.url, timeout=600) as api:
                found = api.query(
                    'count({__name__=~"authorized_hits|authorized_calls|limited_calls"})',
                    time=end,
                )
                series = int(found[0].value) if found else 0
                for view, seconds in VIEWS.items():
                    configure(seconds)
                    for mode, catalogue in catalogues.items():
                        values[(view, mode)] = {}
                        keep = quick_raw if args.quick and mode == "raw counters" else None
                        panels[(view, mode)], variables[(view, mode)] = dq.measure(
                            api,
                            catalogue,
                            end,
                            args.repeat,
                            progress,
                            f"{view}, {mode}",
                            values[(view, mode)],
                            keep,
                        )
                    task = progress.add_task(f"report, {view}", total=2)
                    if view == "last 24 h":
                        rule_costs = time_rules(api, end - end % 3600 + 7, args.repeat)
                    for mode, rules in (("raw counters", False), ("recording rules", True)):
                        if args.quick and not rules and seconds > 3600:
                            reports[(view, mode)] = (None, "not run (--quick)", 0)
                            continue
                        reports[(view, mode)] = time_report(
                            api, config, end - seconds, end, args.repeat, rules
                        )
                        progress.advance(task)
        finally:
            prometheus.stop()
    info.end()
    write(
        args, data, series, build, panels, variables, reports, catalogues, info, values, rule_costs
    )


def agreement(values: dict[tuple[str, str], dq.Values], view: str) -> list[list[str]]:
    """Per instant target: rows in both, rows within 1 % of the raw value, the largest difference.

    A top-N panel's two lists may differ at the cut (rows with nearly equal
    values rank differently); such rows are counted apart, not compared.
    """
    raw, rules = values[(view, "raw counters")], values[(view, "recording rules")]
    rows = []
    for key in sorted(raw):
        got = rules.get(key, {})
        pairs = [(v, got[labels]) for labels, v in raw[key].items() if v and labels in got]
        if not pairs:
            continue
        apart = len(set(raw[key]) ^ set(got))
        diffs = [abs(r - v) / abs(v) for v, r in pairs]
        within = sum(d <= 0.01 for d in diffs)
        rows.append(
            [
                f"{key[0]}.{key[1]}",
                f"{len(pairs):,}",
                f"{within:,} ({within / len(pairs):.1%})",
                f"{max(diffs):.3%}",
                f"{apart:,}",
            ]
        )
    return rows


def write(
    args: argparse.Namespace,
    data: dq.DataSet,
    series: int,
    build: dict[str, float],
    panels: dict[tuple[str, str], dict[str, dq.Timing]],
    variables: dict[tuple[str, str], dict[str, dq.Timing]],
    reports: dict[tuple[str, str], tuple[float | None, str, int]],
    catalogues: dict[str, Catalogue],
    info: benchlib.RunInfo,
    values: dict[tuple[str, str], dq.Values],
    rule_costs: list[list[str]],
) -> None:
    raw = catalogues["raw counters"]
    headers = ["panel", "queries"] + [
        f"{view}, {mode}" for view in VIEWS for mode in ("raw", "rules")
    ]
    rows = []
    for panel in raw.panels:
        row = [panel.title, str(len(panel.targets))]
        for view in VIEWS:
            for mode in ("raw counters", "recording rules"):
                row.append(dq.fmt(panels[(view, mode)][panel.key]))
        rows.append(row)
    names = sorted({n for timings in variables.values() for n in timings})
    for name in names:
        row = [f"variable ${name}", "1"]
        for view in VIEWS:
            for mode in ("raw counters", "recording rules"):
                timing = variables[(view, mode)].get(name)
                row.append(dq.fmt(timing) if timing else "-")
        rows.append(row)
    benchlib.print_table("Panels at scale", headers, rows)

    report_headers = ["report", "reads", "time", "queries sent"]
    report_rows = [
        [
            f"{view}, by user, tier, model",
            mode,
            f"{seconds:.1f} s"
            if seconds is not None
            else (error if error.startswith("not run") else f"FAILED: {error}"),
            str(queries),
        ]
        for (view, mode), (seconds, error, queries) in reports.items()
    ]
    benchlib.print_table("Report at scale", report_headers, report_rows)
    agree_headers = [
        "target (instant)",
        "rows in both (raw > 0)",
        "rules within 1 % of raw",
        "largest difference",
        "rows in one list only",
    ]
    agree = {view: agreement(values, view) for view in VIEWS}
    for view, rows_of_view in agree.items():
        benchlib.print_table(f"Rules vs raw, {view}", agree_headers, rows_of_view)
    failed = [
        f"{view}/{mode}: {key}"
        for (view, mode), timings in panels.items()
        for key, t in timings.items()
        if t.seconds is None and t.error != dq.NOT_RUN
    ]
    slow_rules = [
        f"{view}: {key}"
        for (view, mode), timings in panels.items()
        if mode == "recording rules"
        for key, t in timings.items()
        if t.seconds is None or t.seconds >= 1
    ]
    verdict = ("Failed queries: " + "; ".join(failed) + ". " if failed else "No query failed. ") + (
        "With recording rules every panel answered in under 1 s."
        if not slow_rules
        else "With recording rules, over 1 s or failed: " + "; ".join(slow_rules) + "."
    )
    benchlib.console.print(verdict)
    body = (
        f"## Dashboard panels and report at {data.users:,} users x {len(MODELS)} models x "
        f"{data.hours} h\n\n"
        f"History: {data.users:,} users x {len(MODELS)} models x 2 namespaces, {data.hours} h sampled "
        f"every {SCRAPE} s with one counter reset half-way: {series:,} counter series "
        "(authorized_hits, authorized_calls; limited_calls for every tenth user), backfilled into "
        "Debian's Prometheus 2.42 with `promtool tsdb create-blocks-from openmetrics`, recording "
        "rules with `promtool tsdb create-blocks-from rules` (building took "
        f"{build.get('raw', 0) / 60:.0f} min for the raw data and {build.get('rules', 0) / 60:.0f} "
        "min for the rules, not part of the figures). Generation, expansion and "
        "per-panel timing reuse `benchmarks/bench_dashboard_queries.py` (Grafana-exact "
        "`expand`, instant targets at the end of the view, range targets at Grafana's step; a "
        "panel's time is the sum of its targets' medians over "
        f'{args.repeat} runs, run one after the other). Every filter is "All".\n\n'
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + benchlib.markdown_table(report_headers, report_rows)
        + "\nThe report from raw counters uses "
        f"`--resolution {SCRAPE}s` (windows Prometheus refuses as too large are split); from the "
        "rules (`--recording-rules`) it reads the per-user hour samples for whole hours and the "
        "minute samples of the two edge hours.\n\n"
        + "".join(
            f"Every instant target, rules against raw counters per row, {view} "
            f"(ending {OFF_THE_HOUR} s before the history's end, so both edges cut an hour):\n\n"
            + benchlib.markdown_table(agree_headers, rows_of_view)
            + "\n"
            for view, rows_of_view in agree.items()
        )
        + "What the recording rules cost Prometheus at this scale: each rule's expression "
        "evaluated once, in an hour's first minute (the hour level's only evaluation that "
        "records; the rule manager runs the group once a minute):\n\n"
        + benchlib.markdown_table(["rule", "series", "evaluation"], rule_costs)
        + "\n"
        + verdict
        + "\n\n"
        + info.markdown()
    )
    benchlib.update_section("scale", body, Path(args.out))


if __name__ == "__main__":
    main()
