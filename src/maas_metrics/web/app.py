"""`create_app`: the Dash app of the built-in web dashboard.

It renders `build_catalogue(config)` (the panels of the Grafana JSON). The
flow, built to stay responsive with any number of users and tabs:

* `url` <-> controls: the time range and filters live in the query string
  (Grafana's `from`, `to`, `var-x`), restored on load and on Back / Forward;
* controls -> `view`; `view`, the auto-refresh tick and the Refresh button
  -> `request` (a client-side callback): a tick or a click while any panel
  of the previous request is still loading is skipped, so refreshes of one
  tab never overlap;
* `request` -> one callback per panel (panels appear as their queries
  finish, slow ones do not hold the others back), the banner and the filter
  choices. The user filter searches on the server (`search_value`) instead
  of shipping every user to the page.

All Prometheus queries go through one `SharedQueries` (short cache, single
flight, at most `dashboard.web_concurrency` in flight).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output, State, callback_context, html, no_update
from dash.exceptions import PreventUpdate

from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Catalogue, Panel
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.web import figures
from maas_metrics.web.data import duration_seconds
from maas_metrics.web.layout import build_layout, filters, panel_body_id
from maas_metrics.web.ledger_view import add_ledger_view
from maas_metrics.web.my_usage import default_gateway_url, register_my_usage
from maas_metrics.web.queries import SharedQueries
from maas_metrics.web.state import WebDashboard
from maas_metrics.web.style import CSS
from maas_metrics.web.timerange import range_options, resolve_range
from maas_metrics.web.urlstate import View, make_view, parse_query_string

_LOG = logging.getLogger(__name__)
HEALTH_PATH = "healthz"
UNREACHABLE = "No answer from Prometheus"

_INDEX = (
    """<!DOCTYPE html>
<html>
  <head>
    {%metas%}
    <title>{%title%}</title>
    {%favicon%}
    {%css%}
    <style>"""
    + CSS
    + """</style>
  </head>
  <body>
    {%app_entry%}
    <footer>{%config%}{%scripts%}{%renderer%}</footer>
  </body>
</html>"""
)

#: A new request unless the previous one of this tab still has a panel without its answer.
_SCHEDULE = """
function (tick, clicks, view, request) {
    const skip = window.dash_clientside.no_update;
    if (!view) { return skip; }
    const triggered = window.dash_clientside.callback_context.triggered || [];
    const byView = triggered.some(t => t.prop_id === 'view.data');
    if (request && !byView) {
        const wanted = String(request.generation);
        const slots = Array.from(document.querySelectorAll('.panel-slot'));
        const busy = slots.some(slot => {
            const body = slot.querySelector(':scope > .panel-body');
            return !body || body.getAttribute('data-generation') !== wanted;
        });
        if (busy) { return skip; }
    }
    const generation = request ? request.generation + 1 : 1;
    document.body.dataset.requested = String(generation);  // lets a browser test see what is due
    return {generation: generation, now: Date.now() / 1000, view: view};
}
"""


def create_app(
    config: Config,
    prometheus_url: str,
    *,
    scrape_interval_seconds: float = 15,
    catalogue: Catalogue | None = None,
    timeout_seconds: float = 30,
    gateway_url: str | None = None,
) -> Dash:
    """The Dash app for `config` reading `prometheus_url`; serve `app.server` with any WSGI server.

    `gateway_url` (default: the config's gateway address) serves the "My usage" page's look-ups.
    """
    catalogue = catalogue or build_catalogue(config)
    queries = SharedQueries(
        PrometheusAPI(prometheus_url, timeout=timeout_seconds),
        concurrency=config.dashboard.web_concurrency,
        ttl_seconds=config.dashboard.web_cache_seconds,
    )
    state = WebDashboard(catalogue, queries, scrape_interval_seconds)
    refresh_seconds = duration_seconds(catalogue.refresh) if catalogue.refresh else 30.0
    app = Dash(
        __name__,
        title=catalogue.title,
        update_title="",
        index_string=_INDEX,
        health_endpoint=HEALTH_PATH,
        assets_folder="no-assets",
        include_assets_files=False,
    )
    app.layout = build_layout(catalogue, prometheus_url, refresh_seconds)
    register_my_usage(
        app.server,
        gateway_url or default_gateway_url(config.gateway.host, config.gateway.port),
    )
    app.server.config["maas_queries"] = queries  # for tests and benchmarks: `queries.sent`
    _view_callback(app, catalogue)
    app.clientside_callback(  # type: ignore[no-untyped-call]
        _SCHEDULE,
        Output("request", "data"),
        Input("tick", "n_intervals"),
        Input("refresh", "n_clicks"),
        Input("view", "data"),
        State("request", "data"),
    )
    for panel in catalogue.panels:
        _panel_callback(app, state, panel)
    _status_callbacks(app, state)
    add_ledger_view(app, config)
    return app


def _view_callback(app: Dash, catalogue: Catalogue) -> None:
    ranges = range_options(catalogue.time_from)
    # The catalogue's filters (the schema's: e.g. subscription and cost_center, no user).
    names = [name for name, _ in filters(catalogue)]
    filter_values = [Input(f"filter-{name}", "value") for name in names]

    @app.callback(
        Output("url", "search"),
        Output("filter-range", "value"),
        Output("range-from", "value"),
        Output("range-to", "value"),
        *(Output(f"filter-{name}", "value") for name in names),
        # A dropdown drops values missing from its options: offer the URL's until the real ones come.
        *(Output(f"filter-{name}", "options", allow_duplicate=True) for name in names),
        Output("view", "data"),
        Output("range-error", "children"),
        Input("url", "search"),
        Input("filter-range", "value"),
        Input("range-from", "value"),
        Input("range-to", "value"),
        *filter_values,
        State("view", "data"),
        prevent_initial_call="initial_duplicate",
    )
    def sync_view(
        search: str | None,
        preset: str | None,
        start: str | None,
        end: str | None,
        *values_and_current: Any,
    ) -> tuple[Any, ...]:
        """URL -> controls on load and navigation; controls -> URL and view otherwise."""
        *chosen_values, current = values_and_current
        trigger = callback_context.triggered_id
        keep = tuple(no_update for _ in names)
        if trigger in (None, "url"):
            view = parse_query_string(search, catalogue.time_from)
            error = _invalid(view)
            if error:
                view = View(catalogue.time_from)
            if current is not None and View.from_data(current) == view and not error:
                raise PreventUpdate
            chosen = tuple(view.chosen(name) for name in names)
            return (
                no_update,
                _preset(view, ranges),
                view.start,
                view.end,
                *chosen,
                *chosen,
                view.as_data(),
                error,
            )
        if trigger == "filter-range":
            if preset is None:
                raise PreventUpdate
            start, end = preset, "now"
        values = dict(zip(names, chosen_values, strict=True))
        view = make_view(start or catalogue.time_from, end or "now", values)
        error = _invalid(view)
        if error:
            return (no_update, no_update, no_update, no_update, *keep, *keep, no_update, error)
        return (
            view.query_string(),
            _preset(view, ranges),
            view.start,
            view.end,
            *keep,
            *keep,
            view.as_data(),
            "",
        )


def _preset(view: View, ranges: dict[str, str]) -> str | None:
    """The time picker's choice for the view: a relative range up to now, else "Custom range"."""
    return view.start if view.end == "now" and view.start in ranges else None


def _invalid(view: View) -> str:
    try:
        resolve_range(view.start, view.end, time.time())
    except ValueError as error:
        return str(error)
    return ""


def _panel_callback(app: Dash, state: WebDashboard, panel: Panel) -> None:
    def draw(request: dict[str, Any] | None) -> html.Div:
        if not request:
            raise PreventUpdate
        generation = str(request["generation"])
        view = View.from_data(request["view"])
        try:
            data = state.panel(panel, view, state.window(view, float(request["now"])))
        except Exception:  # a broken panel must not keep its tab busy forever
            _LOG.exception("panel %s failed", panel.key)
            return _error_body("This panel failed; see the server log", generation)
        if data.error is not None and data.error.startswith("cannot reach"):
            return _error_body(UNREACHABLE, generation)
        return figures.render(data, state.tier_colours, generation=generation)

    draw.__name__ = f"draw_{panel.key}"
    app.callback(Output(panel_body_id(panel.key), "children"), Input("request", "data"))(draw)


def _error_body(message: str, generation: str) -> html.Div:
    return html.Div(
        html.Div(message, className="panel-message panel-error"),
        className="panel-body",
        **figures.attributes(state="error", generation=generation),
    )


def _status_callbacks(app: Dash, state: WebDashboard) -> None:
    @app.callback(
        Output("banner", "children"),
        Output("banner", "className"),
        Output("updated", "children"),
        Input("request", "data"),
    )
    def banner(request: dict[str, Any] | None) -> tuple[str, str, str]:
        if not request:
            raise PreventUpdate
        view = View.from_data(request["view"])
        message, kind = state.banner(state.window(view, float(request["now"])))
        return message, f"banner banner-{kind}", "updated " + _clock(float(request["now"]))

    names = [name for name, _ in filters(state.catalogue)]
    # The user filter searches its options as one types (only when the schema has `user`).
    user_search = [Input("filter-user", "search_value")] if "user" in names else []

    @app.callback(
        *(Output(f"filter-{name}", "options") for name in names),
        Input("request", "data"),
        *user_search,
    )
    def options(request: dict[str, Any] | None, search: str | None = None) -> tuple[Any, ...]:
        if not request:
            raise PreventUpdate
        view = View.from_data(request["view"])
        window = state.window(view, float(request["now"]))
        wanted: list[str] = list(names)
        if callback_context.triggered_id == "filter-user":
            wanted = ["user"]

        def answer(name: str) -> Any:
            return state.options(name, view, window, search) if name in wanted else no_update

        try:
            return tuple(answer(name) for name in names)
        except Exception:  # the banner tells what is wrong with Prometheus
            return tuple(no_update for _ in names)


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%H:%M:%S")
