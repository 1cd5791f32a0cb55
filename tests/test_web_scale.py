"""The web dashboard at scale, against a real Prometheus: top N + others, refreshes, shared views.

The history has more users than N, with a tie at the N-th place, a user born
mid-range and a request-policy namespace that must never count. Truths are
computed in Python from the counters' slopes; the browser tests run headless
Chromium against the app served in this process, with Prometheus behind a
small proxy that delays and records every query.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from werkzeug.serving import make_server

from maas_metrics.config import Config, load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.promql import OTHERS
from maas_metrics.dashboard.variables import Selection
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.web import state as state_module
from maas_metrics.web.app import create_app
from maas_metrics.web.data import DashboardData, Window
from maas_metrics.web.queries import SharedQueries
from maas_metrics.web.state import WebDashboard
from maas_metrics.web.urlstate import View
from tests.conftest import EXAMPLE_CONFIG
from tests.servers import free_port, prometheus_holding

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCRAPE = 15
HOUR = 3600
TOP = 3
#: Hits per scrape of each user: a three-way tie at 30 straddles the 3rd place.
SLOPES = {"u1": 50, "u2": 40, "u3": 30, "u4": 30, "u5": 30, "u6": 20, "u7": 10}
LATE_USER, LATE_SLOPE = "late", 25  # born 20 minutes before the end


def _config(**dashboard: Any) -> Config:
    config = load_config(EXAMPLE_CONFIG)
    return config.model_copy(
        update={"dashboard": config.dashboard.model_copy(update={"top_users": TOP, **dashboard})}
    )


CONFIG = _config()


@dataclass
class Env:
    url: str
    end: int
    tokens: str
    requests: str


def _openmetrics(start: int, end: int, tokens: str, requests: str) -> str:
    lines = []
    for user, slope in SLOPES.items():
        for ns, per in ((tokens, slope), (requests, 1000)):
            labels = f'{{limitador_namespace="{ns}",user="{user}",tier="free",model="m"}}'
            lines += [
                f"authorized_hits{labels} {per * i} {t}"
                for i, t in enumerate(range(start, end + 1, SCRAPE))
            ]
        calls = f'{{limitador_namespace="{tokens}",user="{user}",tier="free",model="m"}}'
        times = range(start, end + 1, SCRAPE)
        lines += [f"authorized_calls{calls} {i} {t}" for i, t in enumerate(times)]
    born = end - 1200
    labels = f'{{limitador_namespace="{tokens}",user="{LATE_USER}",tier="premium",model="m"}}'
    lines += [
        f"authorized_hits{labels} {LATE_SLOPE * i} {t}"
        for i, t in enumerate(range(born, end + 1, SCRAPE))
    ]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    end = (int(time.time()) // SCRAPE) * SCRAPE - 60
    start = end - 3 * HOUR
    tokens, requests = CONFIG.namespaces.tokens, CONFIG.namespaces.requests
    data = _openmetrics(start, end, tokens, requests)
    with prometheus_holding(tmp_path_factory.mktemp("prometheus"), data) as prometheus:
        yield Env(prometheus.url, end, tokens, requests)


def _rows(data: DashboardData, key: str, window: Window) -> Any:
    panel = data.panel(data.catalogue.panel(key), Selection(), window)
    assert panel.error is None, panel.error
    return panel.targets[0]


def test_top_users_and_others_add_up_to_the_total(env: Env) -> None:
    """Bar gauge: N users chosen by hits (any of a tie), their exact values, others = the rest."""
    with PrometheusAPI(env.url) as api:
        data = DashboardData(build_catalogue(CONFIG), api)
        window = Window(env.end, HOUR, SCRAPE)
        rows = {s.labels["user"]: s.value for s in _rows(data, "hits_by_user_tier", window).samples}
    per_user = {u: s * HOUR / SCRAPE for u, s in SLOPES.items()}  # linear counters: exact increase
    late = LATE_SLOPE * 1200 / SCRAPE  # born mid-range at 0: counted from its first sample
    total = sum(per_user.values()) + late
    top = {u: v for u, v in rows.items() if u != OTHERS}
    assert len(top) == TOP
    assert {"u1", "u2"} <= set(top) and len(set(top) & {"u3", "u4", "u5"}) == 1  # one of the tie
    for user, value in top.items():
        assert value == pytest.approx(per_user[user], rel=1e-9)
    assert rows[OTHERS] == pytest.approx(total - sum(top.values()), rel=1e-9)
    assert sum(rows.values()) == pytest.approx(total, rel=1e-9)


def test_hourly_top_users_and_others_add_up_per_bar(env: Env) -> None:
    """Range panel: at most N + 1 series, and at every step they add up to that hour's total."""
    with PrometheusAPI(env.url) as api:
        data = DashboardData(build_catalogue(CONFIG), api)
        target = _rows(data, "hourly_hits_by_user", Window(env.end, 2 * HOUR, SCRAPE))
        # Every user listed (top N larger than the users): the same bars without an others row.
        everyone = _rows(
            DashboardData(build_catalogue(_config(top_users=50)), api),
            "hourly_hits_by_user",
            Window(env.end, 2 * HOUR, SCRAPE),
        )
    assert len(target.series) == TOP + 1
    assert {s.labels["user"] for s in target.series} >= {OTHERS, "u1", "u2"}
    sums: dict[float, float] = {}
    for series in target.series:
        for t, v in series.points:
            sums[t] = sums.get(t, 0.0) + v
    assert all(s.labels["user"] != OTHERS for s in everyone.series)
    expected: dict[float, float] = {}
    for series in everyone.series:
        for t, v in series.points:
            expected[t] = expected.get(t, 0.0) + v
    assert sums.keys() == expected.keys() and len(sums) == 3
    for t, value in sums.items():
        assert value == pytest.approx(expected[t], rel=1e-9)
    hour = {s.labels["user"]: s.points[-1][1] for s in target.series}
    alone = {s.labels["user"]: s.points[-1][1] for s in everyone.series}
    assert hour["u1"] == pytest.approx(alone["u1"], rel=1e-9) and hour["u1"] > 0


def test_fewer_users_than_n_shows_no_others_row(env: Env) -> None:
    with PrometheusAPI(env.url) as api:
        data = DashboardData(build_catalogue(_config(top_users=50)), api)
        rows = _rows(data, "hits_by_user_tier", Window(env.end, HOUR, SCRAPE)).samples
    assert {s.labels["user"] for s in rows} == {*SLOPES, LATE_USER}


# --- the page in a browser ---------------------------------------------------------------------


@dataclass
class DelayingProxy:
    """Forwards to Prometheus after `delay` seconds, recording (start, end, evaluation time)."""

    target: str
    delay: float
    log: list[tuple[float, float, str]] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                began = time.monotonic()
                params = urllib.parse.parse_qs((body or b"").decode()) if body else {}
                when = (params.get("time") or params.get("end") or ["labels"])[0]
                # Hourly bars end on a clock hour whatever the refresh; their query names the
                # refresh's range end (the latest `@ <time>`), which tells the refresh apart.
                pinned = re.findall(r"@ ([0-9.]+)", (params.get("query") or [""])[0])
                if params.get("step") == ["3600"] and pinned:
                    when = max(pinned, key=float)
                if when != "labels":
                    when = repr(float(when))  # `1796122062.000` and `1796122062` are one time
                time.sleep(proxy.delay)
                response = httpx.request(
                    self.command,
                    proxy.target + self.path,
                    content=body,
                    headers={"content-type": self.headers.get("content-type", "")},
                    timeout=60,
                )
                proxy.log.append((began, time.monotonic(), when))
                self.send_response(response.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("content-length", 0))))

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def served(env: Env, request: pytest.FixtureRequest) -> Iterator[tuple[str, DelayingProxy]]:
    # (query delay, scrape interval): the page rounds each refresh's time to the scrape interval.
    delay, scrape = getattr(request, "param", (0.0, SCRAPE))
    proxy = DelayingProxy(env.url, delay)
    proxy_server = proxy.serve()
    prometheus = f"http://127.0.0.1:{proxy_server.server_address[1]}"
    app = create_app(
        _config(refresh="1s", web_cache_seconds=0), prometheus, scrape_interval_seconds=scrape
    )
    server = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", proxy
    finally:
        server.shutdown()
        server.server_close()
        proxy_server.shutdown()
        proxy_server.server_close()


def _drawn(page: Page) -> None:
    """Wait until every panel holds the answer of the latest refresh the page asked for."""
    page.wait_for_function(
        """() => { const wanted = document.body.dataset.requested;
            return wanted && Array.from(document.querySelectorAll('.panel-slot')).every(s => {
                const body = s.querySelector(':scope > .panel-body');
                return body && body.dataset.generation === wanted; }); }""",
        timeout=60_000,
    )


def _launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


def _filters(page: Page) -> dict[str, str]:
    values = {name: page.input_value(f"#range-{name}") for name in ("from", "to")}
    values["gauge"] = page.text_content("#panel-hits_by_user_tier") or ""
    values["total"] = page.get_attribute("#panel-total_hits .stat-item", "data-value") or ""
    return values


@pytest.mark.parametrize("served", [(1.0, 1)], indirect=True)
def test_a_refresh_never_starts_while_one_is_in_flight(served: tuple[str, DelayingProxy]) -> None:
    """Auto-refresh every 1 s, every query 1 s late: the refreshes' queries never interleave.

    Each refresh evaluates every query at its own time (whole seconds here), which
    tells the refreshes apart in the proxy's log.
    """
    url, proxy = served
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page()
            page.goto(url + "?from=now-1h&to=now")
            page.wait_for_timeout(30_000)
            _drawn(page)
        finally:
            browser.close()
    spans: dict[str, tuple[float, float]] = {}
    for began, ended, when in proxy.log:
        if when == "labels":
            continue
        first, last = spans.get(when, (began, ended))
        spans[when] = (min(first, began), max(last, ended))
    ordered = sorted(spans.values())
    assert len(ordered) >= 2, "30 s must see several refreshes"
    for (_, previous_end), (next_start, _) in itertools.pairwise(ordered):
        assert next_start >= previous_end, "a refresh started while the previous one was in flight"


def test_url_keeps_the_view_and_absolute_ranges_work(
    env: Env, served: tuple[str, DelayingProxy]
) -> None:
    """Range and filters typed in the page land in the URL; opening that URL shows the same view."""
    url, _ = served
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(env.end - HOUR))
    stop = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(env.end))
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            _drawn(page)
            page.fill("#range-from", start)
            page.press("#range-from", "Enter")
            page.fill("#range-to", stop)
            page.press("#range-to", "Enter")
            page.click("#filter-tier")
            page.click('.dash-dropdown-option:has(input[value="free"])')
            page.keyboard.press("Escape")
            page.wait_for_function("() => location.search.includes('var-tier=free')")
            page.wait_for_function(
                "(s) => location.search.includes(s)", arg=urllib.parse.quote_plus(stop)
            )
            page.wait_for_timeout(500)
            _drawn(page)
            shared = page.url
            before = _filters(page)
            again = browser.new_page(viewport={"width": 1400, "height": 1000})
            again.goto(shared)
            _drawn(again)
            after = _filters(again)
        finally:
            browser.close()
    assert before == after
    assert after["from"] == start and after["to"] == stop
    # The absolute hour holds the free users' exact hits (the premium late user filtered out).
    total = sum(SLOPES.values()) * HOUR / SCRAPE
    assert float(after["total"]) == pytest.approx(total, rel=1e-9)


# --- queries shared by tabs, and bounded ---------------------------------------------------------


def _in_flight_peak(log: list[tuple[float, float, str]]) -> int:
    events = sorted([(b, 1) for b, _, _ in log] + [(e, -1) for _, e, _ in log])
    peak = running = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_identical_queries_are_sent_once_and_at_most_n_at_a_time(env: Env) -> None:
    """Eight tabs asking the same query at once cost one query; different ones queue at the bound."""
    proxy = DelayingProxy(env.url, 0.5)
    server = proxy.serve()
    try:
        api = PrometheusAPI(f"http://127.0.0.1:{server.server_address[1]}")
        shared = SharedQueries(api, concurrency=2, ttl_seconds=60)
        tokens = f'limitador_namespace="{env.tokens}"'
        same = f'sum(authorized_hits{{{tokens}, user="u1"}})'
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: shared.query(same, env.end), range(8)))
        assert len(proxy.log) == 1 and shared.sent == 1
        assert {a[0].value for a in answers} == {SLOPES["u1"] * 3 * HOUR / SCRAPE}
        proxy.log.clear()
        users = [u for u in (*SLOPES, LATE_USER) if u != "u1"]  # u1's answer is still fresh
        with ThreadPoolExecutor(8) as pool:
            values = list(
                pool.map(
                    lambda u: shared.query(
                        f'sum(authorized_hits{{{tokens}, user="{u}"}})', env.end
                    ),
                    users,
                )
            )
        assert len(proxy.log) == len(users)
        assert _in_flight_peak(proxy.log) == 2
        assert [v[0].value for v in values[:2]] == [40 * 3 * HOUR / SCRAPE, 30 * 3 * HOUR / SCRAPE]
        shared.query(same, env.end)  # still fresh: answered from the cache
        assert len(proxy.log) == len(users)
    finally:
        server.shutdown()
        server.server_close()


def test_the_user_filter_searches_on_the_server(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A capped list of matching users (chosen ones kept), never every user of the range."""
    monkeypatch.setattr(state_module, "USER_OPTIONS", 3)
    with PrometheusAPI(env.url) as api:
        state = WebDashboard(build_catalogue(CONFIG), api, SCRAPE)
        view = View("now-6h", "now", {"user": ("u7",)})
        window = state.window(view, float(env.end))
        assert state.options("user", view, window) == ["u1", "u2", "u3", "u7"]
        assert state.options("user", view, window, "U5") == ["u5", "u7"]
        assert state.options("user", view, window, "nobody") == ["u7"]
