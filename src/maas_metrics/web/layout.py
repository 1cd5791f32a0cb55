"""The page: title bar, time range and filters, tier legend, message banner and the panel grid.

Panels sit on Grafana's 24-column grid at the catalogue's positions (rows of
30 px, 8 px gaps, as Grafana lays them out), so both dashboards look alike.
Non-visual parts: `url` (the view in the query string), `view` (the view
the controls describe), `request` (the refresh being drawn: generation,
time, view) and `tick` (auto-refresh).
"""

from __future__ import annotations

from dash import dcc, html

from maas_metrics import contract
from maas_metrics.dashboard.model import Catalogue, Panel
from maas_metrics.web.colours import css_colour
from maas_metrics.web.figures import attributes
from maas_metrics.web.timerange import range_options

FILTERS = (("namespace", "Namespace"), ("tier", "Tier"), ("user", "User"), ("model", "Model"))
"""The seed schema's filters; `filters(catalogue)` gives any schema's."""


def filters(catalogue: Catalogue) -> tuple[tuple[str, str], ...]:
    """(variable, label) of every filter of the catalogue, in its order (as Grafana shows them)."""
    return tuple((v.name, v.label) for v in catalogue.variables if v.kind == "query")


def _plans(catalogue: Catalogue) -> str:
    """`Tiers` or `Subscriptions`: the billing dimension's filter label, plural."""
    names = [v.label for v in catalogue.variables if v.name in contract.BILLING_DIMENSIONS]
    return f"{names[0]}s" if names else "Tiers"


def panel_body_id(key: str) -> dict[str, str]:
    return {"type": "panel-body", "key": key}


def _panel(panel: Panel) -> html.Section:
    grid = panel.grid
    return html.Section(
        [
            html.Div(panel.title, className="panel-title", title=panel.description),
            html.Div(
                html.Div(
                    html.Div("Loading…", className="panel-message"),
                    id=panel_body_id(panel.key),
                    className="panel-slot",
                ),
                className="panel-content",
            ),
        ],
        className=f"panel panel-{panel.kind}",
        id=f"panel-{panel.key}",
        style={
            "gridColumn": f"{grid.x + 1} / span {grid.w}",
            "gridRow": f"{grid.y + 1} / span {grid.h}",
        },
        **attributes(kind=panel.kind, key=panel.key),
    )


def _time_field(name: str, label: str, hint: str) -> html.Div:
    return html.Div(
        [
            html.Label(label, htmlFor=f"range-{name}"),
            dcc.Input(
                id=f"range-{name}",
                type="text",
                debounce=True,
                placeholder=hint,
                className="range-input",
            ),
        ],
        className="filter filter-time",
    )


def _filter(name: str, label: str, catalogue: Catalogue) -> html.Div:
    variable = catalogue.variable(name)
    return html.Div(
        [
            html.Label(label, htmlFor=f"filter-{name}", title=variable.description),
            dcc.Dropdown(
                id=f"filter-{name}",
                options=[],
                value=[],
                multi=True,
                placeholder="All",
                clearable=True,
                searchable=True,
            ),
        ],
        className="filter",
    )


def build_layout(catalogue: Catalogue, prometheus_url: str, refresh_seconds: float) -> html.Div:
    ranges = range_options(catalogue.time_from)
    return html.Div(
        [
            html.Div(
                [
                    html.H1(catalogue.title),
                    html.Span(f"Prometheus {prometheus_url}", className="source"),
                    html.Span(className="spacer"),
                    html.Span(id="updated", className="updated"),
                    html.Button("↻ Refresh", id="refresh", className="refresh-button", n_clicks=0),
                ],
                className="topbar",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Time range", htmlFor="filter-range"),
                            dcc.Dropdown(
                                id="filter-range",
                                options=[{"label": v, "value": k} for k, v in ranges.items()],
                                value=None,
                                placeholder="Custom range",
                                clearable=False,
                                searchable=False,
                            ),
                        ],
                        className="filter",
                    ),
                    _time_field("from", "From", "now-6h or 2025-06-01 08:00 (UTC)"),
                    _time_field("to", "To", "now"),
                    html.Span(id="range-error", className="range-error"),
                    *(_filter(name, label, catalogue) for name, label in filters(catalogue)),
                ],
                className="filters",
            ),
            html.Div(
                [
                    html.Span(f"{_plans(catalogue)}:"),
                    *(
                        html.Span(
                            [
                                html.Span(
                                    className="tier-dot", style={"background": css_colour(t.colour)}
                                ),
                                t.name,
                            ],
                            className="tier-chip",
                        )
                        for t in catalogue.tiers
                    ),
                    html.Span(f"· auto-refresh every {refresh_seconds:g} s"),
                ],
                className="tiers",
            ),
            html.Div(id="banner", className="banner"),
            html.Div([_panel(p) for p in catalogue.panels], className="grid"),
            dcc.Interval(id="tick", interval=int(refresh_seconds * 1000), n_intervals=0),
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="view"),
            dcc.Store(id="request"),
        ],
        className="page",
    )
