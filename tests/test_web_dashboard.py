"""The web dashboard of a running demo, in headless Chromium and against the Grafana JSON.

One demo (real mock model, gateway, traffic, Prometheus, web dashboard) serves
the browser and the parity test; the last test points a dashboard at a dead Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Variable
from maas_metrics.dashboard.variables import (
    Selection,
    expand,
    grafana_interval,
    rate_interval,
    variable_names,
)
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.web.data import DashboardData, PanelData, Window
from maas_metrics.web.figures import longest_series
from tests.servers import free_port, wait_for_port
from tests.test_demo import EXAMPLE_CONFIG, ROOT, DemoProcess, cli

ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCRAPE_INTERVAL = 2  # the demo's default
PANEL_WAIT_SECONDS = 180


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    run = DemoProcess(tmp_path_factory.mktemp("demo"))
    try:
        run.wait_running()
        yield run
    finally:
        run.stop(signal.SIGTERM)


# --- in the browser ------------------------------------------------------------------------------


def _states(page: Page) -> dict[str, str]:
    states: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('section.panel')).map(
            s => [s.dataset.key, (s.querySelector('.panel-body[data-state]') || {dataset: {}}).dataset.state || 'loading']))"""
    )
    return states


def _points(page: Page) -> dict[str, int]:
    points: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('section.panel')).map(
            s => [s.dataset.key, (s.querySelector('.panel-body[data-points]') || {dataset: {}}).dataset.points || '0']))"""
    )
    return {key: int(value) for key, value in points.items()}


def _stat(page: Page, key: str) -> float:
    return float(page.get_attribute(f"#panel-{key} .stat-item", "data-value") or "nan")


def _gauge(page: Page, key: str) -> dict[str, float]:
    rows: list[list[str]] = page.evaluate(
        f"""() => Array.from(document.querySelectorAll('#panel-{key} .gauge-row')).map(
            r => [r.querySelector('.gauge-label').textContent, r.dataset.value])"""
    )
    return {label: float(value) for label, value in rows}


def _table_column(page: Page, key: str, column: str) -> list[str]:
    cells: list[str] = page.evaluate(
        f"""() => Array.from(document.querySelectorAll('#panel-{key} td[data-dash-column="{column}"]'))
            .map(c => c.textContent.trim())"""
    )
    return cells


def _table_rows(page: Page, key: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.evaluate(
        f"""() => Array.from(document.querySelectorAll('#panel-{key} tbody tr')).map(tr =>
            Object.fromEntries(Array.from(tr.querySelectorAll('td[data-dash-column]')).map(
                td => [td.dataset.dashColumn, td.textContent.trim()])))"""
    )
    return [r for r in rows if r]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("$", "").replace("%", "") or "0")


def _refresh_until(page: Page, done: Any, what: str) -> None:
    """Press Refresh until `done(page)` holds; fail after PANEL_WAIT_SECONDS."""
    deadline = time.monotonic() + PANEL_WAIT_SECONDS
    while True:
        updated = page.text_content("#updated")
        page.click("#refresh")
        with contextlib.suppress(PlaywrightTimeout):  # a refresh in the same second keeps the text
            page.wait_for_function(
                "(before) => document.querySelector('#updated').textContent !== before "
                "&& !document.querySelector('[data-dash-is-loading=\"true\"]')",
                arg=updated,
                timeout=15_000,
            )
        if done(page):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {PANEL_WAIT_SECONDS} s: {_states(page)}")
        page.wait_for_timeout(2000)


def test_browser_every_panel_has_data_and_the_tier_filter_changes_the_numbers(
    demo: DemoProcess, example_config: Config
) -> None:
    catalogue = build_catalogue(example_config)
    keys = [p.key for p in catalogue.panels]
    lines = [p.key for p in catalogue.panels if p.kind == "timeseries"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(demo.dashboard_url)
            page.wait_for_selector(".panel-body[data-state]", timeout=60_000)

            def all_have_data(p: Page) -> bool:
                # Time series: a line, not a lone first point. The per-tier rate panels step by
                # 1 min over the last hour (catalogue.RATE_PANEL_POINTS), so a fresh demo has two
                # points after about two minutes.
                points = _points(p)
                return list(_states(p).values()) == ["data"] * len(keys) and all(
                    points[key] >= 2 for key in lines
                )

            _refresh_until(page, all_have_data, "every panel with data")
            assert list(_states(page)) == keys  # every catalogue panel, in catalogue order
            titles = page.eval_on_selector_all(".panel-title", "ts => ts.map(t => t.textContent)")
            assert titles == [p.title for p in catalogue.panels]
            # Drawn, not only fetched: charts have traces, pies slices, gauges and the table rows.
            for panel in catalogue.panels:
                section = f"#panel-{panel.key}"
                if panel.kind in ("timeseries", "barchart"):
                    page.wait_for_selector(
                        f"{section} .main-svg .trace", state="attached", timeout=20_000
                    )
                elif panel.kind == "piechart":
                    page.wait_for_selector(
                        f"{section} .main-svg .slice", state="attached", timeout=20_000
                    )
                elif panel.kind == "bargauge":
                    assert _gauge(page, panel.key), panel.key
                elif panel.kind == "table":
                    assert _table_column(page, panel.key, "user"), panel.key
                else:
                    assert _stat(page, panel.key) > 0, panel.key
            assert page.text_content("#banner") == ""
            page.screenshot(path=str(ARTIFACTS / "web-dashboard.png"), full_page=True)

            total_all = _stat(page, "total_hits")
            tiers_all = _gauge(page, "hits_by_tier")
            assert set(tiers_all) == {"free", "premium", "enterprise"}
            assert set(_table_column(page, "details", "tier")) == {"free", "premium", "enterprise"}

            # Choose tier = free in the filter bar.
            page.click("#filter-tier")
            page.click('.dash-dropdown-option:has(input[value="free"])')
            page.keyboard.press("Escape")

            def only_free(p: Page) -> bool:
                return list(_gauge(p, "hits_by_tier")) == ["free"]

            _refresh_until(page, only_free, "the tier filter applied")
            assert set(_table_column(page, "details", "tier")) == {"free"}
            total_free = _stat(page, "total_hits")
            assert total_free < total_all  # premium and enterprise tokens are gone
            assert total_free == pytest.approx(_gauge(page, "hits_by_tier")["free"], rel=0.05)
            rows = _table_rows(page, "details")
            assert {r["user"] for r in rows} <= {"alice", "bob", "carol"}
            # Active users: those with an allowed or limited call (rows may hold zero increases).
            active = {r["user"] for r in rows if _number(r["Value #B"]) or _number(r["Value #C"])}
            assert _stat(page, "active_users") == len(active) > 0
            page.screenshot(path=str(ARTIFACTS / "web-dashboard-free-tier.png"), full_page=True)
        finally:
            browser.close()


# --- the same numbers as the Grafana JSON ------------------------------------------------------


def _grafana_variables(dashboard: dict[str, Any]) -> list[Variable]:
    """The dashboard variables as Grafana reads them from the JSON (not from the catalogue)."""
    out = []
    for v in dashboard["templating"]["list"]:
        out.append(
            Variable(
                name=v["name"],
                label=v.get("label", ""),
                kind=v["type"],
                value=v["query"] if v["type"] == "constant" else "",
                multi=v.get("multi", False),
                include_all=v.get("includeAll", False),
                all_value=v.get("allValue"),
            )
        )
    return out


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(text[:-1]) * units[text[-1]]


def _prometheus(url: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    body = httpx.post(f"{url}{path}", data=params, timeout=30).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _same(a: float, b: float) -> bool:
    """Equal numbers; Prometheus sums in map order, so the last bit of a float may differ."""
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def _grafana_query_result_options(
    dashboard: dict[str, Any],
    variables: list[Variable],
    selection: Selection,
    end: float,
    range_seconds: float,
    prometheus: str,
) -> dict[str, list[str]]:
    """The options of `query_result(...)` variables as Grafana computes them from the JSON.

    Grafana runs the inner query as an instant query at the end of the range,
    turns each sample into the text `{name="value",...} value timestamp`,
    keeps what the variable's regex captures, and sorts the values (sort 1).
    """
    out: dict[str, list[str]] = {}
    for v in dashboard["templating"]["list"]:
        query = v.get("query")
        if v["type"] != "query" or not str(query).startswith("query_result("):
            continue
        interval = grafana_interval(range_seconds)
        expr = expand(
            query[len("query_result("):-1], selection, range_seconds,
            rate_interval(interval, SCRAPE_INTERVAL), variables=variables,
        )  # fmt: skip
        raw = _prometheus(prometheus, "/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
        pattern = re.compile(v["regex"].strip("/"))
        texts = [
            "{"
            + ",".join(f'{k}="{value}"' for k, value in r["metric"].items())
            + "} "
            + f"{r['value'][1]} {r['value'][0]}"
            for r in raw
        ]
        out[v["name"]] = sorted({m.group(1) for t in texts if (m := pattern.search(t))})
    return out


def _grafana_panel_results(
    panel: dict[str, Any],
    variables: list[Variable],
    selection: Selection,
    end: float,
    range_seconds: float,
    prometheus: str,
    options: dict[str, list[str]],
) -> tuple[dict[str, str], dict[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]]:
    """Each target of a Grafana JSON panel run as Grafana would: refId -> query, [(labels, points)]."""
    queries, out = {}, {}
    for target in panel["targets"]:
        min_interval = _duration(target["interval"]) if target.get("interval") else SCRAPE_INTERVAL
        interval = grafana_interval(
            range_seconds,
            max_data_points=panel.get("maxDataPoints", 1000),
            min_interval_seconds=min_interval,
        )
        expr = expand(
            target["expr"], selection, range_seconds, rate_interval(interval, SCRAPE_INTERVAL),
            variables=variables, interval_seconds=interval, options=options, range_end=end,
        )  # fmt: skip
        queries[target["refId"]] = expr
        if target.get("instant"):
            raw = _prometheus(prometheus, "/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
            rows = [(r["metric"], [(end, float(r["value"][1]))]) for r in raw]
        else:
            # The web dashboard anchors range points at `end` (whole steps back within the range)
            # where Grafana rounds start and end down to the step; the same times are sent here.
            start = end - math.floor(range_seconds / interval) * interval
            last = end
            if variable_names(target["expr"]) & {"__from", "__to"}:
                # Targets reading the range's edges (the hourly bars) are aligned as Grafana does.
                start = (end - range_seconds) // interval * interval
                last = end // interval * interval
            raw = _prometheus(
                prometheus, "/api/v1/query_range",
                {"query": expr, "start": f"{start:.3f}", "end": f"{last:.3f}", "step": f"{interval:g}"},
            )  # fmt: skip
            rows = [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in raw]
        out[target["refId"]] = rows
    return queries, out


def _web_panel_results(
    data: PanelData, end: float
) -> dict[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]:
    out = {}
    for target in data.targets:
        if target.target.instant:
            out[target.target.ref_id] = [(s.labels, [(end, s.value)]) for s in target.samples]
        else:
            out[target.target.ref_id] = [(s.labels, list(s.points)) for s in target.series]
    return out


def _canonical(
    rows: list[tuple[dict[str, str], list[tuple[float, float]]]],
) -> list[tuple[tuple[tuple[str, str], ...], list[tuple[float, float]]]]:
    return sorted((tuple(sorted(labels.items())), points) for labels, points in rows)


def _when_data_is_rich(web: DashboardData) -> float:
    """An evaluation time in the past (no sample arrives after it) at which every panel of the
    last 10 minutes has data and every time series at least 3 points; a bounded wait."""
    deadline = time.monotonic() + PANEL_WAIT_SECONDS
    while True:
        end = float(math.floor(time.time()) - 2 * SCRAPE_INTERVAL)
        probe = web.panels(Selection(), Window(end, 600, SCRAPE_INTERVAL))
        rich = all(
            p.has_data and (p.panel.kind != "timeseries" or longest_series(p) >= 3) for p in probe
        )
        if rich:
            return end
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus data still thin after {PANEL_WAIT_SECONDS} s")
        time.sleep(SCRAPE_INTERVAL)


def test_web_numbers_equal_the_grafana_json_queries(
    demo: DemoProcess, example_config: Config
) -> None:
    dashboard = json.loads(Path(demo.grafana_json).read_text())
    variables = _grafana_variables(dashboard)
    catalogue = build_catalogue(example_config)
    api = PrometheusAPI(demo.prometheus_url)
    web = DashboardData(catalogue, api)
    end = _when_data_is_rich(web)
    users = api.label_values("user")
    selections = [
        Selection(),
        Selection(tier=("free", "enterprise"), model=("granite-8b", "mistral-7b")),
        Selection(
            namespace=("maas/tokens",), user=tuple(u for u in users if u in ("dave", "frank"))
        ),
    ]
    compared = nonempty = 0
    try:
        for range_seconds in (600.0, 3600.0):
            for selection in selections:
                window = Window(end, range_seconds, SCRAPE_INTERVAL)
                results = {d.panel.title: d for d in web.panels(selection, window)}
                assert set(results) == {p["title"] for p in dashboard["panels"]}
                options = _grafana_query_result_options(
                    dashboard, variables, selection, end, range_seconds, demo.prometheus_url
                )
                assert options["table_users"], "the detailed table's users resolve to someone"
                for panel in dashboard["panels"]:
                    ours = results[panel["title"]]
                    assert ours.error is None, ours.error
                    queries, theirs = _grafana_panel_results(
                        panel,
                        variables,
                        selection,
                        end,
                        range_seconds,
                        demo.prometheus_url,
                        options,
                    )
                    # Byte for byte the query Grafana sends.
                    assert {t.target.ref_id: t.expr for t in ours.targets} == queries
                    mine = _web_panel_results(ours, end)
                    assert set(mine) == set(theirs), panel["title"]
                    for ref_id, rows in theirs.items():
                        a, b = _canonical(mine[ref_id]), _canonical(rows)
                        assert [labels for labels, _ in a] == [labels for labels, _ in b], (
                            panel["title"],
                            ref_id,
                            selection,
                        )
                        for (labels, points_a), (_, points_b) in zip(a, b, strict=True):
                            assert len(points_a) == len(points_b), (panel["title"], labels)
                            assert all(
                                ta == tb and _same(va, vb)
                                for (ta, va), (tb, vb) in zip(points_a, points_b, strict=True)
                            ), (panel["title"], ref_id, labels, points_a, points_b)
                        compared += 1
                        nonempty += bool(rows)
    finally:
        api.close()
    # Every target of every panel, for 2 ranges x 3 selections, and most of them with data.
    assert compared == 6 * sum(len(p["targets"]) for p in dashboard["panels"])
    assert nonempty > compared * 0.8


def test_browser_shows_a_clear_message_when_prometheus_is_unreachable(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    server = subprocess.Popen(
        [
            *cli(),
            "serve",
            "--config",
            str(EXAMPLE_CONFIG),
            "--prometheus",
            dead,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60, process=server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector(".banner-error", timeout=30_000)
                banner = page.text_content("#banner") or ""
                assert banner.startswith(f"⚠ Cannot reach Prometheus at {dead}")
                # Panels draw one by one as their queries fail: wait until none is loading.
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('section.panel')).every("
                    "s => s.querySelector('.panel-body[data-state]'))",
                    timeout=60_000,
                )
                assert set(_states(page).values()) == {"error"}
                assert (
                    page.text_content("#panel-total_hits .panel-body")
                    == "No answer from Prometheus"
                )
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
