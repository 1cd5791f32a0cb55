"""The "My usage" page in headless Chromium: the user's own numbers, and the key kept out of reach.

Real parts: mock model, gateway, Prometheus scraping its operator listener,
the web app's WSGI server, Chromium. Truth is what the `openai` client saw.
Every request the page makes is recorded: the key may only travel in the
`Authorization` header of the usage look-up; it must be in no URL (nor the
history), no request body, no cookie, no localStorage or sessionStorage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, sync_playwright
from werkzeug.serving import make_server

from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.web.app import create_app
from tests.gateway_harness import make_config, running_gateway, running_mock, secret
from tests.servers import free_port
from tests.test_usage_endpoint import traffic, wait_for_scrapes, with_usage
from tests.test_web_dashboard import CHROMIUM_ARGS

PRICE = {"alice": 0.005, "frank": 0.01}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Gateway + Prometheus + web app with traffic of alice and frank; yields URLs and truths."""
    prometheus_port = free_port()
    with running_mock() as mock:
        config = with_usage(
            make_config(mock.url),
            prometheus_url=f"http://127.0.0.1:{prometheus_port}",
            resolution_seconds=1,
        )
        with running_gateway(config) as url:
            prometheus = PrometheusProcess(
                tmp_path / "prometheus",
                port=prometheus_port,
                targets=[ScrapeTarget("gateway", url.operator.removeprefix("http://"))],
                scrape_interval="1s",
            )
            with prometheus, PrometheusAPI(prometheus.url) as api:
                wait_for_scrapes(api, 0, 1)
                truths = {
                    "alice": traffic(url, "alice", ["granite-8b", "llama-3-8b"]),
                    "frank": traffic(url, "frank", ["mistral-7b"] * 3),
                }
                last = wait_for_scrapes(api, time.time(), 3)
                while time.time() < last + 1.2:
                    time.sleep(0.05)
                web = create_app(config, prometheus.url, gateway_url=url)
                server = make_server("127.0.0.1", 0, web.server, threaded=True)
                thread = threading.Thread(target=server.serve_forever, daemon=True)
                thread.start()
                try:
                    yield {"web": f"http://127.0.0.1:{server.server_port}", "truths": truths}
                finally:
                    server.shutdown()
                    thread.join(timeout=10)


def field(page: Page, name: str) -> str:
    return page.text_content(f'[data-field="{name}"]') or ""


def look_up(page: Page, key: str) -> None:
    page.fill("#key", key)
    page.click("#show")
    page.wait_for_function(
        "() => { const s = document.getElementById('status').textContent;"
        " return s !== 'Loading…' && (s !== '' || !document.getElementById('result').hidden); }",
        timeout=30_000,
    )


def test_my_usage_page_shows_own_numbers_and_never_keeps_the_key(stack: dict[str, Any]) -> None:
    keys = {user: secret(user) for user in ("alice", "frank")}
    seen: list[Request] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context()
            page = context.new_page()
            page.on("request", lambda r: seen.append(r))
            page.goto(f"{stack['web']}/my-usage")
            visited = [page.url]
            page.on("framenavigated", lambda frame: visited.append(frame.url))
            for user, other in (("alice", "frank"), ("frank", "alice")):
                truth = stack["truths"][user]
                page.fill("#key", "")
                look_up(page, keys[user])
                page.wait_for_selector('[data-field="month-tokens"]', timeout=30_000)
                assert (
                    page.text_content("#who")
                    == f"{user} (tier {'free' if user == 'alice' else 'enterprise'})"
                )
                for period in ("today", "month"):
                    assert int(field(page, f"{period}-tokens").replace(",", "")) == truth.tokens
                    cost = float(field(page, f"{period}-cost").lstrip("$"))
                    assert cost == pytest.approx(truth.tokens * PRICE[user], abs=5e-5)
                    assert int(field(page, f"{period}-limited")) == truth.limited
                assert int(field(page, "requests-used")) == truth.served
                assert int(field(page, "tokens-used").replace(",", "")) == truth.tokens
                assert page.locator("#chart .main-svg").count() > 0  # Plotly drew the chart
                body = page.text_content("body") or ""
                assert other not in body
            # A wrong key shows the gateway's message and no numbers.
            look_up(page, "sk-wrong")
            assert page.text_content("#status") == "Invalid API key."
            assert page.is_hidden("#result")

            # Where the key went: only into the Authorization header of the look-ups.
            history = page.evaluate("() => [location.href, history.length]")
            storage = page.evaluate(
                "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
            )
            cookies = context.cookies()
            sent = [(r.url, r.post_data or "", r.all_headers()) for r in seen]
        finally:
            browser.close()
    secrets = [*keys.values(), "sk-wrong"]
    for secret_text in secrets:
        assert all(secret_text not in url for url in [*visited, history[0]])
        assert secret_text not in storage
        assert all(secret_text not in str(cookie) for cookie in cookies)
    lookups = [headers for url, _, headers in sent if "/my-usage/api" in url]
    assert [h["authorization"] for h in lookups] == [f"Bearer {k}" for k in secrets]
    for url, body, headers in sent:
        for secret_text in secrets:
            assert secret_text not in url and secret_text not in body
            carried = {name for name, value in headers.items() if secret_text in value}
            if "/my-usage/api" in url:
                assert carried <= {"authorization"}
            else:  # the page, its script, Plotly: never the key
                assert not carried, (url, carried)
