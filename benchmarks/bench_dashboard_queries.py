"""How long every dashboard panel's queries take at 10,000 users, raw and with recording rules.

Data set: USERS users x 3 models x 2 namespaces (the request and the token
policy's), i.e. about 60,000 series per counter (authorized_hits,
authorized_calls; limited_calls for every tenth user), HOURS hours sampled
every 15 s with one gateway restart (counter reset) in the middle,
backfilled into the real Prometheus with `promtool tsdb create-blocks-from
openmetrics`. The recording rules are backfilled with `promtool tsdb
create-blocks-from rules` from that raw data. The TSDB is kept in
--data-dir and reused by later runs with the same parameters.

Then every panel of the default view (all filters "All", last 1 hour) is
queried as Grafana queries it: instant targets at the end of the range,
range targets over the hour at Grafana's step. Each target runs --repeat
times; the table shows the median per panel (its targets one after the
other, as a sum) and whether any query failed.

Run: .venv/bin/python benchmarks/bench_dashboard_queries.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

import benchlib
from maas_metrics.config import load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Catalogue, Panel, Target
from maas_metrics.dashboard.variables import (
    Selection,
    expand,
    grafana_interval,
    rate_interval,
    top_values,
)
from maas_metrics.prometheus import PrometheusAPI, PrometheusError, PrometheusProcess
from maas_metrics.prometheus.process import find_binary
from maas_metrics.rules.recording import recording_groups

CONFIG = benchlib.ROOT / "examples" / "maas.yaml"
RESULTS = benchlib.RESULTS / "dashboard_queries.md"
MODELS = ("granite-8b", "llama-3-8b", "mistral-7b")
SCRAPE = 15
BLOCK = 7200  # promtool writes 2 h blocks; one input file per block keeps files small
VIEW_RANGE = 3600  # the default view: last 1 hour
PRICE_DAY = date(2025, 6, 1)


@dataclass(frozen=True)
class DataSet:
    users: int
    hours: int
    start: int

    @property
    def end(self) -> int:
        return self.start + self.hours * 3600

    def key(self) -> str:
        return json.dumps(
            {"users": self.users, "hours": self.hours, "start": self.start, "version": 1}
        )


def tier_of(user: int) -> str:
    return "free" if user % 10 < 6 else "premium" if user % 10 < 9 else "enterprise"


class Traffic:
    """Deterministic per-step request counts and token sizes, from shared random pools."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.requests = [min(4, int(rng.expovariate(2.5))) for _ in range(65_521)]
        self.tokens = [rng.randint(20, 800) for _ in range(65_519)]

    def steps(self, series: int, first: int, count: int) -> Iterator[tuple[int, int]]:
        """(requests, tokens) for steps first..first+count of one user-model pair."""
        base = series * 7919
        pool_r, pool_t = self.requests, self.tokens
        for k in range(first, first + count):
            n = pool_r[(base + k) % len(pool_r)]
            yield n, n * pool_t[(base + 3 * k) % len(pool_t)]


def write_chunk(
    data: DataSet, traffic: Traffic, chunk_start: int, path: Path, carry: dict[str, int]
) -> None:
    """Samples of every series for [chunk_start, chunk_start + BLOCK) as OpenMetrics."""
    restart = data.start + data.hours * 1800  # the gateway restarts half-way
    first = (chunk_start - data.start) // SCRAPE
    count = min(BLOCK, data.end + SCRAPE - chunk_start) // SCRAPE
    times = [chunk_start + i * SCRAPE for i in range(count)]
    with path.open("w", encoding="utf-8", buffering=1 << 22) as out:
        for user in range(data.users):
            tier = tier_of(user)
            for m, model in enumerate(MODELS):
                pair = user * len(MODELS) + m
                steps = list(traffic.steps(pair, first, count))
                labels = f'model="{model}",tier="{tier}",user="user-{user:05d}"'
                series = {
                    f'authorized_calls{{limitador_namespace="maas/requests",{labels}}}': [
                        s[0] for s in steps
                    ],
                    f'authorized_hits{{limitador_namespace="maas/requests",{labels}}}': [
                        s[0] for s in steps
                    ],
                    f'authorized_calls{{limitador_namespace="maas/tokens",{labels}}}': [
                        s[0] for s in steps
                    ],
                    f'authorized_hits{{limitador_namespace="maas/tokens",{labels}}}': [
                        s[1] for s in steps
                    ],
                }
                if user % 10 == 3:
                    limited = [1 if s[0] >= 2 else 0 for s in steps]
                    series[
                        f'limited_calls{{limit_name="{tier}-requests",limitador_namespace="maas/requests",{labels}}}'
                    ] = limited
                    series[
                        f'limited_calls{{limit_name="{tier}-tokens",limitador_namespace="maas/tokens",{labels}}}'
                    ] = limited
                for name, increments in series.items():
                    value = carry.get(name, 0)
                    lines = []
                    for t, inc in zip(times, increments, strict=True):
                        value = 0 if t == restart + SCRAPE else value + inc
                        lines.append(f"{name} {value} {t}\n")
                    carry[name] = value
                    out.write("".join(lines))
        if chunk_start == data.start:
            config = load_config(CONFIG)
            for tier_cfg in config.tiers:
                for ns, policy, limit in (
                    ("maas/requests", "requests", tier_cfg.request_limit),
                    ("maas/tokens", "tokens", tier_cfg.token_limit),
                ):
                    if limit is None:
                        continue
                    gauge = (
                        f'maas_limit_max{{limit_name="{tier_cfg.name}-{policy}",limitador_namespace="{ns}",'
                        f'policy="{policy}",tier="{tier_cfg.name}"}}'
                    )
                    out.write(
                        "".join(
                            f"{gauge} {limit.max} {t}\n"
                            for t in range(data.start, data.end + 1, SCRAPE)
                        )
                    )
        out.write("# EOF\n")


def build_tsdb(data: DataSet, data_dir: Path, progress: Progress) -> None:
    marker = data_dir / "raw.ready"
    if marker.exists() and marker.read_text() == data.key():
        progress.console.print(f"reusing the raw TSDB in {data_dir}")
        return
    tsdb = data_dir / "tsdb"
    if tsdb.exists():
        raise SystemExit(f"{tsdb} holds other data: remove it or choose another --data-dir")
    traffic = Traffic()
    carry: dict[str, int] = {}
    chunks = list(range(data.start, data.end + 1, BLOCK))
    task = progress.add_task("generating + promtool backfill", total=len(chunks))
    running: subprocess.Popen[bytes] | None = None
    previous: Path | None = None
    for chunk in chunks:
        path = data_dir / f"chunk-{chunk}.om"
        write_chunk(data, traffic, chunk, path, carry)
        if running is not None:
            _finish(running, previous)
            progress.advance(task)
        running = subprocess.Popen(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(path),
                str(tsdb),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        previous = path
    if running is not None:
        _finish(running, previous)
        progress.advance(task)
    marker.write_text(data.key())


def _finish(process: subprocess.Popen[bytes], path: Path | None) -> None:
    _, err = process.communicate()
    if path is not None:
        path.unlink()
    if process.returncode != 0:
        raise SystemExit(f"promtool backfill failed: {err.decode().strip()}")


def build_rules(data: DataSet, prometheus: PrometheusProcess, progress: Progress) -> None:
    marker = prometheus.data_dir / "rules.ready"
    key = data.key() + json.dumps(recording_groups())
    if marker.exists():
        if marker.read_text() == key:
            return
        raise SystemExit(
            f"{marker.parent} holds other recording rules: remove it or choose another --data-dir"
        )
    from tests.history import backfill_recording_rules  # after benchlib put the repo on sys.path

    task = progress.add_task("promtool create-blocks-from rules", total=None)
    backfill_recording_rules(prometheus, data.start, data.end)
    progress.update(task, total=1, completed=1)
    marker.write_text(key)


@dataclass
class Timing:
    seconds: float | None
    error: str = ""


def run_target(
    api: PrometheusAPI,
    catalogue: Catalogue,
    target: Target,
    end: int,
    options: dict[str, list[str]],
    max_data_points: int | None = None,
    values: dict[tuple[tuple[str, str], ...], float] | None = None,
) -> Timing:
    """Time one target as Grafana runs it (its panel's max data points set the step).

    `values`: filled with an instant target's result (labels -> value).
    """
    step = (
        3600
        if target.min_step == "1h"
        else grafana_interval(VIEW_RANGE, max_data_points=max_data_points or 1000)
    )
    expr = expand(
        target.expr,
        Selection(),
        VIEW_RANGE,
        rate_interval(step),
        variables=catalogue.variables,
        interval_seconds=step,
        options=options,
        range_end=end,
    )
    began = time.perf_counter()
    try:
        if target.instant:
            samples = api.query(expr, time=end)
            if values is not None:
                values.update({tuple(sorted(s.labels.items())): s.value for s in samples})
        else:
            api.query_range(expr, (end - VIEW_RANGE) // step * step, end // step * step, step)
    except PrometheusError as error:
        return Timing(None, str(error)[:120])
    return Timing(time.perf_counter() - began)


def resolve_variables(
    api: PrometheusAPI, catalogue: Catalogue, end: int, repeat: int
) -> tuple[dict[str, list[str]], dict[str, Timing]]:
    """The hidden `top` variables' options (as Grafana resolves them) and every variable's time.

    The filter variables' `label_values` are timed over the whole TSDB (Grafana
    narrows them to the dashboard range, so this is an upper bound).
    """
    options: dict[str, list[str]] = {}
    timings: dict[str, Timing] = {}
    for variable in catalogue.variables:
        if variable.kind not in ("query", "top"):
            continue
        runs: list[float] = []
        try:
            for _ in range(repeat):
                began = time.perf_counter()
                if variable.kind == "top":
                    expr = expand(
                        variable.top_expr,
                        Selection(),
                        VIEW_RANGE,
                        60,
                        variables=catalogue.variables,
                        range_end=end,
                    )
                    samples = api.query(expr, time=end)
                    options[variable.name] = top_values(variable, [s.labels for s in samples])
                else:
                    match = expand(
                        variable.match, Selection(), VIEW_RANGE, 60, variables=catalogue.variables
                    )
                    api.label_values(variable.label_name, [match])
                runs.append(time.perf_counter() - began)
        except PrometheusError as error:
            timings[variable.name] = Timing(None, str(error)[:120])
            continue
        timings[variable.name] = Timing(statistics.median(runs))
    return options, timings


Values = dict[tuple[str, str], dict[tuple[tuple[str, str], ...], float]]


def measure(
    api: PrometheusAPI,
    catalogue: Catalogue,
    end: int,
    repeat: int,
    progress: Progress,
    label: str,
    values: Values | None = None,
    keep: Callable[[Panel], bool] | None = None,
) -> tuple[dict[str, Timing], dict[str, Timing]]:
    """Per panel (by key) and per variable (by name) timings of the default view.

    `values`: filled with every instant target's result, by (panel key, ref id).
    `keep`: the panels to run (the others are "not run").
    """
    options, variable_timings = resolve_variables(api, catalogue, end, repeat)
    targets = [(p, t) for p in catalogue.panels for t in p.targets]
    task = progress.add_task(f"queries ({label})", total=len(targets) * repeat)
    out: dict[str, Timing] = {}
    for panel in catalogue.panels:
        total, error = 0.0, ""
        if keep is not None and not keep(panel):
            out[panel.key] = Timing(None, NOT_RUN)
            progress.advance(task, len(panel.targets) * repeat)
            continue
        for target in panel.targets:
            runs = []
            result = None if values is None else values.setdefault((panel.key, target.ref_id), {})
            for _ in range(repeat):
                timing = run_target(
                    api, catalogue, target, end, options, panel.max_data_points, result
                )
                progress.advance(task)
                if timing.seconds is None:
                    error = timing.error
                    break
                runs.append(timing.seconds)
            if runs:
                total += statistics.median(runs)
        out[panel.key] = Timing(None if error else total, error)
    return out, variable_timings


NOT_RUN = "not run"


def fmt(timing: Timing) -> str:
    if timing.seconds is None:
        return "-" if timing.error == NOT_RUN else f"FAILED: {timing.error}"
    return f"{timing.seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "maas-bench-dashboard",
        help="Where the TSDB is built and kept for later runs.",
    )
    parser.add_argument("--no-write", action="store_true", help=f"Do not write {RESULTS.name}.")
    args = parser.parse_args()
    command = (
        ".venv/bin/python benchmarks/bench_dashboard_queries.py"
        + (f" --users {args.users}" if args.users != 10_000 else "")
        + (f" --hours {args.hours}" if args.hours != 6 else "")
    )
    info = benchlib.RunInfo.begin(command)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    marker = args.data_dir / "raw.ready"
    if marker.exists():
        start = json.loads(marker.read_text())["start"]
    else:
        start = (int(time.time()) // BLOCK) * BLOCK - args.hours * 3600
    data = DataSet(args.users, args.hours, start)
    if marker.exists() and marker.read_text() != data.key():
        start = (int(time.time()) // BLOCK) * BLOCK - args.hours * 3600
        data = DataSet(args.users, args.hours, start)

    config = load_config(CONFIG)
    raw = build_catalogue(config, price_date=PRICE_DAY)
    rules = build_catalogue(config, recording_rules=True, price_date=PRICE_DAY)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    ]
    prometheus = PrometheusProcess(args.data_dir, retention="3650d")
    with Progress(*columns, console=benchlib.console) as progress:
        build_tsdb(data, args.data_dir, progress)
        task = progress.add_task("starting Prometheus", total=None)
        prometheus.start(timeout=600)
        progress.update(task, total=1, completed=1)
        try:
            build_rules(data, prometheus, progress)
            with PrometheusAPI(prometheus.url, timeout=600) as api:
                series = api.query(
                    'count({__name__=~"authorized_hits|authorized_calls|limited_calls"})',
                    time=data.end,
                )
                series_count = int(series[0].value) if series else 0
                measured_raw, variables_raw = measure(
                    api, raw, data.end, args.repeat, progress, "raw counters"
                )
                measured_rules, variables_rules = measure(
                    api, rules, data.end, args.repeat, progress, "recording rules"
                )
        finally:
            prometheus.stop()
    info.end()

    headers = ["Panel", "Queries", "Raw counters", "--recording-rules"]
    rows = [
        [
            panel.title,
            str(len(panel.targets)),
            fmt(measured_raw[panel.key]),
            fmt(measured_rules[panel.key]),
        ]
        for panel in raw.panels
    ]
    rows += [
        [f"variable ${name}", "1", fmt(timing), fmt(variables_rules[name])]
        for name, timing in variables_raw.items()
    ]
    benchlib.print_table(
        f"Default view (last 1 h, All) over {series_count:,} series", headers, rows
    )
    failures = [k for k, t in itertools.chain(measured_raw.items()) if t.seconds is None]
    slow = [k for k, t in measured_rules.items() if t.seconds is None or t.seconds >= 1]
    verdict = (
        f"Raw counters: {'no panel failed' if not failures else 'FAILED: ' + ', '.join(failures)}. "
        f"With --recording-rules: "
        f"{'every panel under 1 s' if not slow else 'over 1 s or failed: ' + ', '.join(slow)}."
    )
    benchlib.console.print(verdict)
    if args.no_write:
        return
    body = (
        "# Dashboard query cost\n\n"
        f"{info.markdown()}\n"
        f"Data set: {args.users:,} users x {len(MODELS)} models x 2 namespaces "
        f"(`maas/requests`, `maas/tokens`), {args.hours} h sampled every {SCRAPE} s with one counter reset, "
        f"{series_count:,} counter series in total (authorized_hits, authorized_calls; limited_calls for "
        "every tenth user), backfilled into Debian's Prometheus 2.42 (`promtool tsdb create-blocks-from "
        "openmetrics`); recording rules backfilled with `promtool tsdb create-blocks-from rules`.\n\n"
        'Default view: every filter "All", last 1 hour, instant targets at the end of the hour, range '
        f"targets at Grafana's step ({grafana_interval(VIEW_RANGE):g} s; hourly panel 1 h). A panel's time is "
        f"the sum of its targets' medians over {args.repeat} runs, one after the other (Grafana runs them in "
        "parallel, so this is an upper bound). Variables are resolved before the panels: "
        "`$table_users` (the detailed table's 100 most active users) by an instant query, the filters by "
        "`label_values` over the whole TSDB (an upper bound: Grafana asks for the dashboard range).\n\n"
        + benchlib.markdown_table(headers, rows)
        + f"\n{verdict}\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(body, encoding="utf-8")
    benchlib.console.print(f"[green]wrote {RESULTS.relative_to(benchlib.ROOT)}")


if __name__ == "__main__":
    main()
