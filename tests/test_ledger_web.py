"""The web dashboard with a ledger, in real Chromium: the last reconciliation and exact totals.

Truth: the records themselves (tokens of the records that charged usage in
the range, priced with the example config's per-hit prices, written here
by hand), not the ledger report the page uses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, sync_playwright
from werkzeug.serving import make_server

from maas_metrics.config import Config, Ledger, load_config
from maas_metrics.ledger import LedgerStore, RequestRecord
from maas_metrics.ledger.reconcile_log import ReconcileRun, save_run
from maas_metrics.web.app import create_app
from tests.conftest import EXAMPLE_CONFIG
from tests.ledger_data import random_records
from tests.servers import free_port

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PRICE = {"free": 0.005, "premium": 0.008, "enterprise": 0.010}  # examples/maas.yaml, by hand
START = datetime(2026, 11, 4, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 5, 3, 30, 17, tzinfo=UTC)  # mid-hour: partial hours at the edge


@dataclass
class Served:
    url: str
    store: LedgerStore
    recs: list[RequestRecord]


def _truth(recs: list[RequestRecord], user: str | None = None) -> tuple[int, float]:
    lo, hi = round(START.timestamp() * 1000), round(END.timestamp() * 1000)
    tokens, cost = 0, 0.0
    for r in recs:
        if lo < round(r.ended * 1000) <= hi and r.usage_namespace and (user in (None, r.user)):
            tokens += r.total_tokens
            cost += r.total_tokens * PRICE[r.tier]
    return tokens, cost


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("ledger-web")
    url = f"sqlite:///{folder}/ledger.db"
    config: Config = load_config(EXAMPLE_CONFIG)
    config = config.model_copy(update={"ledger": Ledger(url=url)})
    store = LedgerStore(url)
    store.open()
    recs = random_records(3000, seed=11)
    store.write(recs)
    run_at = datetime(2026, 11, 5, 4, 0, tzinfo=UTC)
    save_run(store.engine, ReconcileRun(run_at, START, END, True, 0, 0, 1, 1))
    # Prometheus is not running: the Prometheus panels say so, the ledger strip does not care.
    app = create_app(config, f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    server = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}/", store, recs)
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def _open(page: Page, base: str, **filters: str) -> dict[str, Any]:
    query = {"from": START.strftime("%Y-%m-%d %H:%M:%S"), "to": END.strftime("%Y-%m-%d %H:%M:%S")}
    query |= {f"var-{k}": v for k, v in filters.items()}
    page.goto(base + "?" + urlencode(query))
    totals = page.wait_for_selector(".ledger-totals[data-tokens]", timeout=60_000)
    assert totals is not None
    line = page.wait_for_selector(".ledger-reconcile", timeout=60_000)
    assert line is not None
    return {
        "tokens": int(totals.get_attribute("data-tokens") or "-1"),
        "cost": float(totals.get_attribute("data-cost") or "nan"),
        "text": totals.inner_text(),
        "reconcile": line.inner_text(),
        "verdict": line.get_attribute("data-verdict"),
    }


def test_the_page_shows_exact_ledger_totals_and_the_last_reconciliation(served: Served) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            shown = _open(page, served.url)
            tokens, cost = _truth(served.recs)
            assert tokens > 0
            # Records lie on both sides of the range: those outside must be left out.
            assert min(r.ended for r in served.recs) < START.timestamp()
            assert max(r.ended for r in served.recs) > END.timestamp()
            assert shown["tokens"] == tokens
            assert shown["cost"] == pytest.approx(cost, rel=1e-12)
            assert "FROM THE LEDGER" in shown["text"].upper()
            assert f"{tokens:,}" in shown["text"]
            assert "2026-11-04 00:00:00 UTC to 2026-11-05 03:30:17 UTC" in shown["text"]
            assert shown["verdict"] == "ok"
            assert shown["reconcile"] == (
                "Last reconciliation: 2026-11-05 04:00:00 UTC, 2026-11-04 00:00:00 UTC to "
                "2026-11-05 03:30:17 UTC: 0 differences"
            )

            shown = _open(page, served.url, user="alice")  # the filters apply to the ledger too
            assert shown["tokens"] == _truth(served.recs, "alice")[0] < tokens

            # A later run that found a problem replaces the line at the next refresh.
            later = datetime(2026, 11, 5, 5, 0, tzinfo=UTC)
            bad = ReconcileRun(later, START, END, False, 2, 1, 500, 480)
            save_run(served.store.engine, bad)
            page.click("#refresh")
            page.wait_for_selector(".ledger-reconcile[data-verdict=problem]", timeout=60_000)
            text = page.inner_text(".ledger-reconcile")
            assert "1 difference beyond the edge tolerance" in text
            assert "ledger 500 vs Prometheus 480 tokens" in text
        finally:
            browser.close()


def test_no_ledger_no_strip() -> None:
    app = create_app(load_config(EXAMPLE_CONFIG), f"http://127.0.0.1:{free_port()}")
    assert "ledger-view" not in str(app.layout)
