"""`create_app`: the Dash app of the built-in web dashboard.

It renders `build_catalogue(config)` (the panels of the Grafana JSON) through
the data layer; two callbacks run on the 30 s tick, on the Refresh button
and on every filter change: one fills the filter choices (users narrowed by
the chosen namespaces and tiers, as the Grafana variables are), the other
the panels plus the banner that says when Prometheus is unreachable or has
no data yet.
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, callback_context, html, no_update

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.dashboard.variables import ALL as ALL_VALUES
from maas_metrics.dashboard.variables import Selection
from maas_metrics.prometheus import PrometheusAPI, PrometheusError
from maas_metrics.web import figures
from maas_metrics.web.data import DashboardData, PanelData, Window, duration_seconds, now
from maas_metrics.web.layout import build_layout, filters
from maas_metrics.web.style import CSS
from maas_metrics.web.timerange import range_seconds

HEALTH_PATH = "healthz"

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


def selection_of(
    namespace: list[str] | None,
    tier: list[str] | None,
    user: list[str] | None,
    model: list[str] | None,
) -> Selection:
    """Dropdown values as a Selection: nothing chosen means All, as in Grafana."""

    def choice(values: list[str] | None) -> Any:
        return list(values) if values else ALL_VALUES

    return Selection(choice(namespace), choice(tier), choice(user), choice(model))


def selection_from(names: list[str], values: tuple[list[str] | None, ...]) -> Selection:
    """The dropdowns of any schema's filters (`names`, in order) as a Selection; empty is All."""
    return Selection(
        **{
            name: list(chosen) if chosen else ALL_VALUES
            for name, chosen in zip(names, values, strict=True)
        }
    )


class WebDashboard:
    """The app's state: catalogue, data layer and time settings (one per served dashboard)."""

    def __init__(
        self, catalogue: Catalogue, api: PrometheusAPI, scrape_interval_seconds: float
    ) -> None:
        self.catalogue = catalogue
        self.api = api
        self.data = DashboardData(catalogue, api)
        self.scrape_interval_seconds = scrape_interval_seconds
        self.tier_colours = dict(catalogue.tier_colours)

    def window(self, relative: str | None) -> Window:
        seconds = range_seconds(relative or self.catalogue.time_from)
        return Window(now(), seconds, self.scrape_interval_seconds)

    def banner(self, window: Window) -> tuple[str, str]:
        """(message, kind): kind `error` (unreachable), `info` (no data yet) or `ok` (no message)."""
        try:
            namespaces = self.data.options("namespace", Selection(), window)
        except PrometheusError as error:
            reason = str(error)
            return (
                f"⚠ {reason[:1].upper()}{reason[1:]}. The dashboard retries on every refresh.",
                "error",
            )
        if not namespaces:
            return (
                f"⏳ Prometheus at {self.api.url} has no MaaS metrics yet (authorized_calls, "
                "limited_calls). Is it scraping the gateway's /metrics? Panels fill in as soon as "
                "the first scrape with traffic arrives.",
                "info",
            )
        return "", "ok"

    def panels(self, selection: Selection, window: Window) -> dict[str, PanelData]:
        return {d.panel.key: d for d in self.data.panels(selection, window)}

    def options(
        self, name: str, selection: Selection, window: Window, chosen: list[str] | None
    ) -> list[str]:
        values = self.data.options(name, selection, window)
        if name in contract.BILLING_DIMENSIONS:  # configured tiers in level order first
            order = {t.name: i for i, t in enumerate(self.catalogue.tiers)}
            values = sorted(values, key=lambda v: (order.get(v, len(order)), v))
        # Keep chosen values selectable even when the range no longer holds them.
        return values + [v for v in chosen or [] if v not in values]


def create_app(
    config: Config,
    prometheus_url: str,
    *,
    scrape_interval_seconds: float = 15,
    catalogue: Catalogue | None = None,
) -> Dash:
    """The Dash app for `config` reading `prometheus_url`; serve `app.server` with any WSGI server."""
    catalogue = catalogue or build_catalogue(config)
    state = WebDashboard(
        catalogue, PrometheusAPI(prometheus_url, timeout=30), scrape_interval_seconds
    )
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
    names = [name for name, _ in filters(catalogue)]
    filter_inputs = [Input(f"filter-{name}", "value") for name in names]

    @app.callback(
        Output({"type": "panel-body", "key": ALL}, "children"),
        Output("banner", "children"),
        Output("banner", "className"),
        Output("updated", "children"),
        Input("tick", "n_intervals"),
        Input("refresh", "n_clicks"),
        Input("filter-range", "value"),
        *filter_inputs,
    )
    def refresh_panels(
        _tick: int, _clicks: int, relative: str | None, *chosen: list[str] | None
    ) -> tuple[list[html.Div], str, str, str]:
        window = state.window(relative)
        message, kind = state.banner(window)
        keys = [output["id"]["key"] for output in callback_context.outputs_list[0]]
        if kind == "error":
            bodies = [
                html.Div(
                    html.Div("No answer from Prometheus", className="panel-message panel-error"),
                    className="panel-body",
                    **figures.attributes(state="error"),
                )
                for _ in keys
            ]
        else:
            data = state.panels(selection_from(names, chosen), window)
            bodies = [figures.render(data[key], state.tier_colours) for key in keys]
        updated = "updated " + _clock(window.end)
        return bodies, message, f"banner banner-{kind}", updated

    @app.callback(
        *(Output(f"filter-{name}", "options") for name in names),
        Input("tick", "n_intervals"),
        Input("refresh", "n_clicks"),
        Input("filter-range", "value"),
        *filter_inputs,
    )
    def refresh_options(
        _tick: int, _clicks: int, relative: str | None, *chosen: list[str] | None
    ) -> tuple[Any, ...]:
        window = state.window(relative)
        selection = selection_from(names, chosen)
        try:
            return tuple(
                state.options(name, selection, window, values)
                for name, values in zip(names, chosen, strict=True)
            )
        except PrometheusError:
            return tuple(no_update for _ in names)

    return app


def _clock(timestamp: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")
