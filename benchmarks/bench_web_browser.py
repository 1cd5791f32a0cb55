"""The built-in web dashboard in headless Chromium at 10,000 users x 5 models: before and after.

History: `bench_dashboard_queries.py`'s deterministic traffic (its OpenMetrics
generator and `promtool tsdb create-blocks-from openmetrics`), 10,000 users x
5 models x 2 namespaces over 6 h sampled every 120 s (210,000 series; 24 h
took promtool over 4 min per 2 h block on this shared 2-core machine, so the
history is kept to 6 h; the views are "Last 7 days", so every series is born
mid-range), raw counters, a real Prometheus 2.42 with its default
limits. "before" serves the dashboard from `git archive <ref> src` (default
`main`), "after" from this tree, each as `maas-metrics serve`, one after the
other against the same Prometheus.

Per variant and view ("Last 7 days", All and tier=premium), in a fresh
headless Debian Chromium (fresh profile): seconds until every panel is drawn
(every panel body has its state and no callback is loading; charts have their
SVG), the longest main-thread task (Long Tasks API), the data payload (the
layout and callback responses; the static scripts are the same for both and
listed apart) and DOM nodes. A view not drawn within --cap seconds is
recorded as such. Then, for "after", four tabs (2 x All, 2 x premium) on
the 30 s auto-refresh for --tabs-seconds: refreshes of one tab that overlap
(a callback of refresh n+1 sent before the last answer of refresh n),
panels that timed out or failed, the most queries Prometheus ran at once
(`prometheus_engine_queries`, sampled every second) and the queries it ran.

Not measured here: `serve --recording-rules`. The rules record one-minute
increases, which need at least two samples a minute, and this history is
sampled every 120 s to be buildable here.

Run: .venv/bin/python benchmarks/bench_web_browser.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, Request, sync_playwright
from rich.progress import Progress

import bench_dashboard_queries as dq
import benchlib
from maas_metrics.prometheus import PrometheusProcess

MODELS = ("granite-8b", "llama-3-8b", "mistral-7b", "qwen-2-7b", "phi-3-mini")
SCRAPE = 120
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWS = {
    "Last 7 days, All": "?from=now-7d&to=now",
    "Last 7 days, tier=premium": "?from=now-7d&to=now&var-tier=premium",
}
#: What "before" has no URL for: the same views chosen in the filter bar (tier first, then range).
CLICKS = {
    "Last 7 days, All": [],
    "Last 7 days, tier=premium": [
        "#filter-tier",
        '.dash-dropdown-option:has(input[value="premium"])',
    ],
}
#: The chosen view has arrived: total hits above 0 (the default last hour holds none) or an error.
HAS_DATA = """() => { const body = document.querySelector('#panel-total_hits .panel-body');
    const item = document.querySelector('#panel-total_hits .stat-item');
    return body && (body.dataset.state === 'error' || (item && parseFloat(item.dataset.value) > 0)); }"""
RESULTS = benchlib.RESULTS / "web-scale.md"

LONG_TASKS = """
window.__longest = 0; window.__longTasks = 0; window.__tasks = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) {
    window.__tasks.push([e.startTime, e.duration]);
    window.__longTasks += 1; window.__longest = Math.max(window.__longest, e.duration); } })
  .observe({type: 'longtask', buffered: true});
"""
#: The longest task that is not plotly.js's one-off script evaluation (the first task that
#: starts after plotly.min.js arrived), in ms.
LONGEST_OTHER = """() => {
    const plotly = performance.getEntriesByType('resource').find(r => r.name.includes('plotly.min.js'));
    const after = plotly ? plotly.responseEnd : Infinity;
    const evaluation = window.__tasks.filter(t => t[0] >= after).sort((a, b) => a[0] - b[0])[0];
    return Math.max(0, ...window.__tasks.filter(t => t !== evaluation).map(t => t[1]));
}"""
DRAWN = """() => {
    const panels = Array.from(document.querySelectorAll('section.panel'));
    return panels.length > 0
        && panels.every(p => p.querySelector('.panel-body[data-state]'))
        && !document.querySelector('[data-dash-is-loading="true"]')
        && Array.from(document.querySelectorAll('.panel-graph')).every(g => g.querySelector('.main-svg'));
}"""


@dataclass
class ViewResult:
    drawn_seconds: float | None
    longest_task_ms: float | None = None
    longest_other_ms: float | None = None
    long_tasks: int | None = None
    payload_bytes: int = 0
    static_bytes: int = 0
    dom_nodes: int | None = None
    errors: list[str] = field(default_factory=list)


def source_tree(ref: str, into: Path) -> Path:
    """`src/` of git `ref`, unpacked into `into` (no worktree, nothing checked out)."""
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=benchlib.ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def serve(
    src: Path, prometheus: str, log: Path, extra: list[str], scrape: int = SCRAPE
) -> tuple[subprocess.Popen[bytes], str]:
    port = benchlib.free_port()
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "maas_metrics", "serve", "--config", str(dq.CONFIG), *extra]
    command += ["--prometheus", prometheus, "--port", str(port), "--scrape-interval", str(scrape)]
    process = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    benchlib.wait_for_port(port, timeout=120, process=process)
    return process, f"http://127.0.0.1:{port}/"


def read(page: Page, expression: str, timeout: float) -> Any:
    """`expression`'s value, or None when the tab's main thread stays busy for `timeout` s.

    (`page.evaluate` has no timeout: on a frozen tab it would wait forever.)
    """
    try:
        handle = page.wait_for_function(f"() => [({expression})()]", timeout=timeout * 1000)
    except Exception:  # the tab did not answer in time
        return None
    return handle.json_value()[0]


def measure_view(playwright: Any, url: str, cap: float, clicks: list[str] | None) -> ViewResult:
    """Open the view by URL, or (`clicks`, for a dashboard without URL state) by the filter bar."""
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
    )
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.add_init_script(LONG_TASKS)
        finished: list[Request] = []
        page.on("requestfinished", lambda request: finished.append(request))
        began = time.monotonic()
        page.goto(url, timeout=cap * 1000)
        try:
            if clicks is not None:
                page.wait_for_function(DRAWN, timeout=cap * 1000, polling=500)  # default view
                for selector in clicks:
                    page.click(selector)
                page.keyboard.press("Escape")
                page.click("#filter-range")
                page.click('.dash-dropdown-option:has-text("Last 7 days")')
                page.wait_for_function(HAS_DATA, timeout=cap * 1000, polling=500)
            page.wait_for_function(DRAWN, timeout=cap * 1000, polling=500)
        except Exception:  # not drawn within the cap (or the tab froze): record it as such
            result = ViewResult(None)
        else:
            result = ViewResult(time.monotonic() - began)
            page.wait_for_timeout(2000)  # tasks that end after the last panel
            facts = read(
                page,
                """() => [window.__longest, ("""
                + LONGEST_OTHER
                + """)(), window.__longTasks,
                    document.getElementsByTagName('*').length,
                    Array.from(document.querySelectorAll('.panel-body[data-state="error"]'))
                        .map(b => b.textContent)]""",
                cap,
            )
            if facts is not None:
                (
                    result.longest_task_ms,
                    result.longest_other_ms,
                    result.long_tasks,
                    result.dom_nodes,
                    result.errors,
                ) = facts
        for request in finished:
            size = request.sizes()["responseBodySize"]
            if "_dash-layout" in request.url or "_dash-update-component" in request.url:
                result.payload_bytes += size
            else:
                result.static_bytes += size
        return result
    finally:
        browser.close()


@dataclass
class TabLog:
    """One tab's callback requests: (sent, answered, refresh generation)."""

    calls: list[tuple[float, float | None, int]] = field(default_factory=list)
    pending: dict[int, tuple[float, int]] = field(default_factory=dict)
    failed: int = 0

    def watch(self, page: Page) -> None:
        def sent(request: Request) -> None:
            if "_dash-update-component" not in request.url:
                return
            body = json.loads(request.post_data or "{}")
            inputs = body.get("inputs", [])
            value = inputs[0].get("value") if inputs else None
            if inputs and inputs[0].get("id") == "request" and isinstance(value, dict):
                self.pending[id(request)] = (time.monotonic(), int(value["generation"]))

        def done(request: Request) -> None:
            start = self.pending.pop(id(request), None)
            if start is not None:
                self.calls.append((start[0], time.monotonic(), start[1]))

        def failed(request: Request) -> None:
            done(request)
            self.failed += 1

        page.on("request", sent)
        page.on("requestfinished", done)
        page.on("requestfailed", failed)

    def refreshes(self) -> list[tuple[int, float, float]]:
        spans: dict[int, tuple[float, float]] = {}
        for sent, answered, generation in self.calls:
            first, last = spans.get(generation, (sent, answered or sent))
            spans[generation] = (min(first, sent), max(last, answered or sent))
        return sorted((g, a, b) for g, (a, b) in spans.items())

    def overlaps(self) -> int:
        spans = self.refreshes()
        return sum(1 for (_, _, end), (_, start, _) in itertools.pairwise(spans) if start < end)


def prometheus_metric(url: str, name: str) -> float:
    """The sum of a Prometheus self-metric; infinity while Prometheus is too busy to answer."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return float("inf")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def idle(prometheus: str, limit: float = 300) -> None:
    """Wait until Prometheus runs no query (what an earlier view left running), at most `limit` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and prometheus_metric(
        prometheus, "prometheus_engine_queries "
    ):
        time.sleep(2)


def four_tabs(playwright: Any, url: str, prometheus: str, seconds: float) -> dict[str, Any]:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
    )
    busiest = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            running = prometheus_metric(prometheus, "prometheus_engine_queries ")
            if running != float("inf"):
                busiest[0] = max(busiest[0], running)
            stop.wait(1.0)

    queries_before = prometheus_metric(
        prometheus, 'prometheus_engine_query_duration_seconds_count{slice="inner_eval"}'
    )
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    logs: list[TabLog] = []
    errors: set[str] = set()
    try:
        pages = []
        for query in (*VIEWS.values(), *VIEWS.values()):
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.add_init_script(LONG_TASKS)
            log = TabLog()
            log.watch(page)
            logs.append(log)
            page.goto(url + query)
            pages.append(page)
        for page in pages:  # from here on: the refreshes only
            page.wait_for_function(DRAWN, timeout=seconds * 1000, polling=500)
            page.evaluate("() => { window.__longest = 0; }")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for page in pages:
                errors.update(
                    page.eval_on_selector_all(
                        '.panel-body[data-state="error"]', "bs => bs.map(b => b.textContent)"
                    )
                )
            pages[0].wait_for_timeout(5000)
        longest = max(page.evaluate("() => window.__longest") for page in pages)
    finally:
        stop.set()
        sampler.join()
        browser.close()
    queries = prometheus_metric(
        prometheus, 'prometheus_engine_query_duration_seconds_count{slice="inner_eval"}'
    )
    return {
        "refreshes": [len(log.refreshes()) for log in logs],
        "overlaps": sum(log.overlaps() for log in logs),
        "failed_requests": sum(log.failed for log in logs),
        "panel_errors": sorted(errors),
        "max_concurrent_queries": busiest[0],
        "longest_task_ms": longest,
        "queries": queries - queries_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--before", default="main", help="git ref of the 'before' dashboard")
    parser.add_argument("--cap", type=float, default=240, help="seconds to wait for a view")
    parser.add_argument("--tabs-seconds", type=float, default=180)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "maas-bench-web"
    )
    parser.add_argument(
        "--scrape", type=int, default=SCRAPE, help="the history's sample interval in seconds"
    )
    parser.add_argument(
        "--recording-rules",
        action="store_true",
        help="serve 'after' with --recording-rules (the data dir must hold the rules, e.g. "
        "bench_scale.py's: --data-dir /tmp/maas-bench-scale --hours 24 --scrape 30 --before none)",
    )
    parser.add_argument("--section", default="web-browser", help="section of the results file")
    args = parser.parse_args()
    dq.MODELS = MODELS  # type: ignore[assignment]
    dq.SCRAPE = args.scrape
    args.data_dir.mkdir(parents=True, exist_ok=True)
    marker = args.data_dir / "raw.ready"
    start = (
        json.loads(marker.read_text())["start"]
        if marker.exists()
        else int(time.time()) // dq.BLOCK * dq.BLOCK - args.hours * 3600
    )
    data = dq.DataSet(args.users, args.hours, start)
    built = time.perf_counter()
    with Progress(console=benchlib.console) as progress:
        dq.build_tsdb(data, args.data_dir, progress)
    built = time.perf_counter() - built
    command = " ".join([".venv/bin/python benchmarks/bench_web_browser.py", *sys.argv[1:]])
    info = benchlib.RunInfo.begin(command)
    prometheus = PrometheusProcess(args.data_dir, retention="3650d")
    prometheus.start(timeout=900)
    results: dict[str, dict[str, ViewResult]] = {}
    tabs: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="maas-bench-web-"))
    try:
        trees: dict[str, tuple[Path, list[str]]] = {}
        if args.before != "none":
            label = f"before ({args.before}, raw counters)"
            trees[label] = (source_tree(args.before, work / "before"), [])
        rules = ["--recording-rules"] if args.recording_rules else []
        trees["after" + (", recording rules" if rules else "")] = (benchlib.ROOT / "src", rules)
        with sync_playwright() as playwright:
            for variant, (src, extra) in trees.items():
                server, url = serve(
                    src, prometheus.url, work / f"{variant[:5]}.log", extra, args.scrape
                )
                try:
                    results[variant] = {}
                    for view, query in VIEWS.items():
                        idle(prometheus.url)
                        benchlib.console.print(f"{variant}: {view}")
                        by_clicks = CLICKS[view] if variant.startswith("before") else None
                        target = url if by_clicks is not None else url + query
                        results[variant][view] = measure_view(
                            playwright, target, args.cap, by_clicks
                        )
                        benchlib.console.print(results[variant][view])
                    if variant.startswith("after"):
                        idle(prometheus.url)
                        benchlib.console.print("after: four tabs on auto-refresh")
                        tabs = four_tabs(playwright, url, prometheus.url, args.tabs_seconds)
                        benchlib.console.print(tabs)
                finally:
                    server.terminate()
                    try:
                        server.wait(timeout=30)
                    except subprocess.TimeoutExpired:  # threads still waiting on Prometheus
                        server.kill()
                        server.wait()
    finally:
        prometheus.stop()
    info.end()
    write(args, results, tabs, info, built)


def _fmt(result: ViewResult, cap: float) -> list[str]:
    drawn = (
        f"{result.drawn_seconds:.1f} s"
        if result.drawn_seconds is not None
        else f"not drawn in {cap:.0f} s"
    )

    def seconds(ms: float | None) -> str:
        return f"{ms / 1000:.2f} s" if ms is not None else "-"

    return [
        drawn,
        seconds(result.longest_task_ms),
        seconds(result.longest_other_ms),
        f"{result.payload_bytes / 1e6:.2f} MB",
        str(result.dom_nodes) if result.dom_nodes is not None else "-",
        "; ".join(f"{result.errors.count(e)} x {e}" for e in sorted(set(result.errors))) or "none",
    ]


def write(
    args: argparse.Namespace,
    results: dict[str, dict[str, ViewResult]],
    tabs: dict[str, Any],
    info: benchlib.RunInfo,
    built: float,
) -> None:
    headers = [
        "variant, view",
        "every panel drawn",
        "longest main-thread task",
        "longest task but plotly.js's evaluation",
        "data payload",
        "DOM nodes",
        "panel errors",
    ]
    rows = [
        [f"{variant}: {view}", *_fmt(result, args.cap)]
        for variant, views in results.items()
        for view, result in views.items()
    ]
    static = max((r.static_bytes for v in results.values() for r in v.values()), default=0)
    body = [
        "## Web dashboard in a browser at 10,000 users (bench_web_browser.py)",
        "",
        info.markdown(),
        f"History: {args.users:,} users x {len(MODELS)} models x 2 namespaces, {args.hours} h sampled "
        f"every {args.scrape} s, "
        + (
            "recording rules (`serve --recording-rules`)"
            if args.recording_rules
            else "raw counters"
        )
        + ", Prometheus 2.42 with default limits; "
        f"building it took {built:.0f} s (0 when reused). Headless Debian Chromium, fresh profile per view, "
        f"views opened by URL. Static scripts (the same for both): {static / 1e6:.1f} MB, not in the payload.",
        "",
        benchlib.markdown_table(headers, rows),
        "",
    ]
    if tabs:
        body += [
            f"Four tabs (2 x All, 2 x tier=premium, Last 7 days) on the 30 s auto-refresh for "
            f"{args.tabs_seconds:.0f} s ({next(reversed(results))}): refreshes per tab {tabs['refreshes']}, overlapping "
            f"refreshes {tabs['overlaps']}, longest main-thread task during the refreshes "
            f"{tabs['longest_task_ms'] / 1000:.2f} s, failed callback requests {tabs['failed_requests']}, panels "
            f"that failed or timed out: {', '.join(tabs['panel_errors']) or 'none'}; most queries "
            f"Prometheus ran at once {tabs['max_concurrent_queries']:.0f} (sampled every second), "
            f"queries it ran {tabs['queries']:.0f}.",
            "",
        ]
    benchlib.update_section(args.section, "\n".join(body), RESULTS)
    benchlib.print_table("Web dashboard at scale", headers, rows)
    benchlib.console.print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
