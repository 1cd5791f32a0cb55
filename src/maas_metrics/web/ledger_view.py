"""The ledger on the web dashboard: the last reconciliation and the range's exact billing totals.

With `ledger.url` configured, a strip under the banner shows the verdict of
the last `maas-metrics reconcile` (from `ledger_reconciliations`) and the
total tokens and cost of the selected range and filters read from the
ledger (exact integers, priced like `report --source ledger`), labelled
"from the ledger" so nobody mistakes them for the Prometheus panels'
`increase()` estimates. Without a ledger nothing is added.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output, html
from dash.exceptions import PreventUpdate
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from maas_metrics.config import Config
from maas_metrics.ledger.reconcile_log import last_run
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.store import LedgerError, LedgerStore, configured_url
from maas_metrics.web.figures import attributes
from maas_metrics.web.layout import FILTERS
from maas_metrics.web.timerange import resolve_range
from maas_metrics.web.urlstate import View

_LOG = logging.getLogger(__name__)
STRIP_ID = "ledger-view"
UNREADABLE = "The ledger database cannot be read; see the dashboard's log"
CSS = """
.ledger-view { display: flex; flex-wrap: wrap; gap: 6px 24px; align-items: baseline;
  border: 1px solid rgba(115, 191, 105, 0.45); background: rgba(115, 191, 105, 0.08);
  border-radius: 4px; padding: 8px 14px; margin-bottom: 12px; font-size: 14px; }
.ledger-view:empty { display: none; }
.ledger-label { font-size: 11px; text-transform: uppercase; letter-spacing: 0.05em; opacity: 0.8; }
.ledger-figure { font-weight: 600; font-variant-numeric: tabular-nums; }
.ledger-problem { color: #FF9AA5; }
"""


class _Ledger:
    """One store opened on first use (the dashboard starts even while the database is away)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._store: LedgerStore | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._store is None:
                store = LedgerStore(configured_url(self._config.ledger))
                store.open()
                self._store = store
            return self._store.engine


def _time(ms_time: datetime) -> str:
    return ms_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _reconciliation(engine: Engine) -> html.Div:
    run = last_run(engine)
    if run is None:
        text = "Last reconciliation: never (run `maas-metrics reconcile`)"
        return html.Div(text, className="ledger-reconcile", **attributes(verdict="none"))
    verdict = "ok" if run.ok else "problem"
    return html.Div(
        f"Last reconciliation: {_time(run.run)}, {run.summary()}",
        className="ledger-reconcile" + ("" if run.ok else " ledger-problem"),
        **attributes(verdict=verdict),
    )


def _totals(engine: Engine, config: Config, view: View, now: float) -> html.Div:
    first, last = resolve_range(view.start, view.end, now)
    start, end = datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)
    filters = {name: view.filters[name] for name, _ in FILTERS if view.filters.get(name)}
    report = build_ledger_report(engine, config, start, end, ("tier",), filters)
    tokens, cost = round(report.total.tokens), report.total.cost
    return html.Div(
        [
            html.Span("From the ledger", className="ledger-label"),
            html.Span(["Total tokens ", html.B(f"{tokens:,}", className="ledger-figure")]),
            html.Span(["Total cost ", html.B(f"${cost:,.4f}", className="ledger-figure")]),
            html.Span(f"{_time(start)} to {_time(end)}", className="ledger-range"),
        ],
        className="ledger-totals",
        **attributes(tokens=str(tokens), cost=repr(cost)),
    )


def add_ledger_view(app: Dash, config: Config) -> None:
    """Put the ledger strip under the banner and keep it current with each refresh (no ledger: no-op)."""
    if not config.ledger.enabled:
        return
    page: Any = app.layout
    children = list(page.children)
    at = next(i for i, c in enumerate(children) if getattr(c, "id", None) == "banner") + 1
    children.insert(at, html.Div(id=STRIP_ID, className="ledger-view"))
    page.children = children
    app.index_string = app.index_string.replace("</style>", CSS + "</style>", 1)
    ledger = _Ledger(config)

    @app.callback(Output(STRIP_ID, "children"), Input("request", "data"))
    def ledger_strip(request: dict[str, Any] | None) -> list[html.Div]:
        if not request:
            raise PreventUpdate
        view = View.from_data(request["view"])
        try:
            engine = ledger.engine()
            return [_totals(engine, config, view, float(request["now"])), _reconciliation(engine)]
        except ValueError:
            raise PreventUpdate from None  # an invalid range: the range field says why
        except (LedgerError, SQLAlchemyError):
            _LOG.exception("the ledger cannot be read")
            return [html.Div(UNREADABLE, className="ledger-problem")]
