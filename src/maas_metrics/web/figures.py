"""Panel data to Dash components: stat, time series, bar chart, bar gauge, pie chart and table.

Every rendered panel body carries `data-state` (`data`, `empty` or `error`)
and every shown number a `data-value`, so a browser (or a test) can tell a
panel with data from an empty one without reading pixels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import plotly.graph_objects as go
from dash import dcc, html
from dash.dash_table.DataTable import DataTable

from maas_metrics import contract
from maas_metrics.dashboard.model import TIER_LEGEND_SEPARATOR, Panel, Threshold
from maas_metrics.prometheus import Sample
from maas_metrics.web.colours import NEUTRAL, css_colour, series_colour
from maas_metrics.web.data import PanelData, TargetData
from maas_metrics.web.units import format_value

TEXT = "#CCCCDC"
MUTED = "#8E8E9E"
GRID = "rgba(204, 204, 220, 0.12)"
TABLE_PAGE = 100
_LEGEND_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def attributes(**values: str) -> dict[str, Any]:
    """`data-*` attributes for a Dash component (`state="data"` -> `data-state="data"`)."""
    return {f"data-{name}": value for name, value in values.items()}


def legend_text(legend: str, labels: Mapping[str, str]) -> str:
    """Grafana's legend format: `{{label}}` replaced by the value; no format -> `{a="b"}`."""
    if legend:
        text = _LEGEND_RE.sub(lambda m: labels.get(m.group(1), ""), legend)
        return text.removesuffix(TIER_LEGEND_SEPARATOR)  # the others row has no tier
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return labels.get("__name__", "") + "{" + inner + "}"


def _colour(panel: Panel, labels: Mapping[str, str], tiers: Mapping[str, str], index: int) -> str:
    tier = next((labels[d] for d in contract.BILLING_DIMENSIONS if d in labels), "")
    if panel.colour_by_tier and tier in tiers:
        return css_colour(tiers[tier])
    return series_colour(index)


def threshold_colour(thresholds: Sequence[Threshold], value: float) -> str | None:
    """The colour of the highest step at or below `value` (Grafana's absolute thresholds)."""
    colour = None
    for step in thresholds:
        if step.value is None or value >= step.value:
            colour = css_colour(step.colour)
    return colour


def _state(data: PanelData) -> str:
    if data.error is not None:
        return "error"
    return "data" if data.has_data else "empty"


def render(data: PanelData, tiers: Mapping[str, str], generation: str = "") -> html.Div:
    """The body of one panel, wrapped in a div whose `data-state` tells what it holds.

    `generation`: the page's refresh this answers (`data-generation`), so the
    page can tell when every panel of a refresh has arrived.
    """
    panel = data.panel
    if data.error is not None:
        body: Any = html.Div(data.error, className="panel-message panel-error")
    elif not data.has_data:
        body = html.Div(panel.no_data or "No data", className="panel-message")
    elif panel.kind == "stat":
        body = _stat(data, tiers)
    elif panel.kind == "table":
        body = _table(data, tiers)
    elif panel.kind == "bargauge":
        body = _bar_gauge(data, tiers)
    else:
        body = dcc.Graph(
            figure=_figure(data, tiers),
            config={"displayModeBar": False, "responsive": True},
            className="panel-graph",
            style={"height": "100%", "width": "100%"},
        )
    return html.Div(
        body,
        className="panel-body",
        **attributes(state=_state(data), points=str(longest_series(data)), generation=generation),
    )


def longest_series(data: PanelData) -> int:
    """Points of the longest series (range targets) or samples (instant targets): how full it is."""
    lengths = [len(s.points) for t in data.targets for s in t.series]
    lengths += [len(t.samples) for t in data.targets if t.samples]
    return max(lengths, default=0)


# --- stat and bar gauge (plain HTML, crisp at any size) ------------------------------------------


def _samples(data: PanelData) -> list[tuple[TargetData, Sample]]:
    return [(t, s) for t in data.targets for s in t.samples]


def _stat(data: PanelData, tiers: Mapping[str, str]) -> html.Div:
    panel = data.panel
    values = []
    for index, (target, sample) in enumerate(_samples(data)):
        colour = threshold_colour(panel.thresholds, sample.value) if panel.thresholds else None
        if colour is None:
            colour = (
                _colour(panel, sample.labels, tiers, index) if panel.colour_by_tier else NEUTRAL
            )
        text = format_value(sample.value, panel.unit, panel.decimals)
        values.append(
            html.Div(
                [
                    html.Div(text, className="stat-value", style={"color": colour}),
                    html.Div(
                        legend_text(target.target.legend, sample.labels), className="stat-label"
                    )
                    if len(data.targets) > 1 or len(target.samples) > 1
                    else None,
                ],
                className="stat-item",
                **attributes(value=repr(sample.value)),
            )
        )
    return html.Div(values, className="stat")


def _bar_gauge(data: PanelData, tiers: Mapping[str, str]) -> html.Div:
    panel = data.panel
    rows = _samples(data)
    top = max((s.value for _, s in rows), default=0.0)
    scale = max(panel.max_value if panel.max_value is not None else top, top) or 1.0
    bottom = panel.min_value or 0.0
    items = []
    for index, (target, sample) in enumerate(rows):
        colour = (
            threshold_colour(panel.thresholds, sample.value)
            if panel.thresholds and not panel.colour_by_tier
            else None
        ) or _colour(panel, sample.labels, tiers, index)
        share = max(0.0, min(1.0, (sample.value - bottom) / (scale - bottom or 1.0)))
        items.append(
            html.Div(
                [
                    html.Div(
                        legend_text(target.target.legend, sample.labels), className="gauge-label"
                    ),
                    html.Div(
                        html.Div(
                            className="gauge-fill",
                            style={"width": f"{share * 100:.2f}%", "background": colour},
                        ),
                        className="gauge-track",
                    ),
                    html.Div(
                        format_value(sample.value, panel.unit, panel.decimals),
                        className="gauge-value",
                        style={"color": colour},
                    ),
                ],
                className="gauge-row",
                **attributes(value=repr(sample.value)),
            )
        )
    return html.Div(items, className="gauge")


# --- plotly figures ------------------------------------------------------------------------------


def _axis_format(unit: str) -> dict[str, Any]:
    if unit == "percentunit":
        return {"tickformat": ".0%"}
    if unit == "currencyUSD":
        return {"tickprefix": "$"}
    if unit == "reqps":
        return {"ticksuffix": " req/s"}
    if unit == "s":  # latency panels
        return {"tickformat": ",~r", "ticksuffix": " s"}
    return {"tickformat": ",~r"}


def _base_layout(panel: Panel) -> dict[str, Any]:
    yaxis: dict[str, Any] = {
        "gridcolor": GRID,
        "zeroline": False,
        "rangemode": "tozero",  # counts, rates, shares and costs are never negative
        **_axis_format(panel.unit),
    }
    if panel.min_value is not None or panel.max_value is not None:
        yaxis["range"] = [
            panel.min_value or 0,
            panel.max_value if panel.max_value is not None else None,
        ]
    return {
        "template": "plotly_dark",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": TEXT, "size": 11},
        "margin": {"l": 48, "r": 12, "t": 8, "b": 8},
        "xaxis": {"gridcolor": GRID, "zeroline": False},
        "yaxis": yaxis,
        "legend": {"orientation": "h", "y": -0.15, "x": 0, "font": {"size": 11}},
        "hovermode": "x unified",
        "uirevision": panel.key,
    }


def _times(points: Sequence[tuple[float, float]]) -> list[datetime]:
    return [datetime.fromtimestamp(t).astimezone() for t, _ in points]


def _hover(panel: Panel) -> str:
    if panel.unit == "percentunit":
        return "%{y:.1%}"
    if panel.unit == "currencyUSD":
        return "$%{y:,.2f}"
    return "%{y:,.4~f}"


def _figure(data: PanelData, tiers: Mapping[str, str]) -> go.Figure:
    panel = data.panel
    figure = go.Figure(layout=_base_layout(panel))
    index = 0
    for target in data.targets:
        if target.target.instant:  # pie chart (or instant bars): one slice / bar per sample
            continue
        for series in target.series:
            name = legend_text(target.target.legend, series.labels)
            colour = _colour(panel, series.labels, tiers, index)
            index += 1
            xs, ys = _times(series.points), [v for _, v in series.points]
            hover = f"{name}: {_hover(panel)}<extra></extra>"
            if panel.kind == "barchart":
                figure.add_bar(x=xs, y=ys, name=name, marker_color=colour, hovertemplate=hover)
            else:
                figure.add_scatter(
                    x=xs,
                    y=ys,
                    name=name,
                    mode="lines" if len(xs) > 30 else "lines+markers",  # few points stay visible
                    marker={"size": 4},
                    line={
                        "color": colour,
                        "width": 2,
                        "dash": "dash" if target.target.dashed else "solid",
                    },
                    hovertemplate=hover,
                )
    if panel.kind == "barchart":
        figure.update_layout(barmode="stack" if panel.stacked else "group", bargap=0.25)
    if panel.kind == "piechart":
        _pie(figure, data, tiers)
    return figure


def _pie(figure: go.Figure, data: PanelData, tiers: Mapping[str, str]) -> None:
    panel = data.panel
    labels, values, colours = [], [], []
    for index, (target, sample) in enumerate(_samples(data)):
        labels.append(legend_text(target.target.legend, sample.labels))
        values.append(sample.value)
        colours.append(_colour(panel, sample.labels, tiers, index))
    figure.add_pie(
        labels=labels,
        values=values,
        hole=0.45,
        marker={"colors": colours, "line": {"color": "#181B1F", "width": 2}},
        textinfo="percent",
        sort=False,
        hovertemplate="%{label}: %{value:,.4~f} (%{percent})<extra></extra>",
    )
    figure.update_layout(
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        legend={"orientation": "v", "x": 1.0, "y": 0.5, "font": {"size": 11}},
    )


# --- table ---------------------------------------------------------------------------------------


def table_rows(data: PanelData) -> list[dict[str, Any]]:
    """The table's rows: targets merged on the label columns, as Grafana's merge transform does."""
    panel = data.panel
    keys = [c.label for c in panel.columns if c.label is not None]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for target in data.targets:
        field = f"Value #{target.target.ref_id}"
        for sample in target.samples:
            key = tuple(sample.labels.get(k, "") for k in keys)
            row = rows.setdefault(key, dict(zip(keys, key, strict=True)))
            row[field] = sample.value
    first = next((c.grafana_field for c in panel.columns if c.ref_id is not None), "")
    return sorted(rows.values(), key=lambda r: (-(r.get(first) or 0.0), *(r[k] for k in keys)))


def _column_format(unit: str, decimals: int | None) -> dict[str, Any]:
    """A DataTable number format (d3-format specifier), matching `units.format_value`."""
    places = 2 if decimals is None else decimals
    if unit == "percentunit":
        return {"specifier": f".{places}%"}
    if unit == "currencyUSD":
        return {"specifier": f"$,.{places}f", "locale": {"symbol": ["$", ""]}}
    return {"specifier": f",.{places}f"}


def _table(data: PanelData, tiers: Mapping[str, str]) -> DataTable:
    panel = data.panel
    columns: list[Any] = []
    for column in panel.columns:
        spec: dict[str, Any] = {"name": column.title, "id": column.grafana_field}
        if column.ref_id is not None:
            spec.update(type="numeric", format=_column_format(column.unit, column.decimals))
        columns.append(spec)
    tier_field = next(
        (c.grafana_field for c in panel.columns if c.label in contract.BILLING_DIMENSIONS), None
    )
    conditional: list[dict[str, Any]] = []
    if tier_field is not None:
        conditional = [
            {
                "if": {"filter_query": f'{{{tier_field}}} = "{name}"', "column_id": tier_field},
                "color": css_colour(colour),
                "fontWeight": "600",
            }
            for name, colour in tiers.items()
        ]
    return DataTable(
        data=cast(Any, table_rows(data)),
        columns=columns,
        sort_action="native",
        page_action="native",  # pages of TABLE_PAGE rows: the DOM stays small at any row count
        page_size=TABLE_PAGE,
        style_table={"height": "100%", "overflowY": "auto"},
        style_as_list_view=True,
        style_header={
            "backgroundColor": "#22252B",
            "color": TEXT,
            "fontWeight": "600",
            "border": "none",
            "borderBottom": "1px solid #34373D",
        },
        style_cell={
            "backgroundColor": "transparent",
            "color": TEXT,
            "border": "none",
            "borderBottom": "1px solid #2A2D33",
            "fontFamily": "Inter, 'Helvetica Neue', Arial, sans-serif",
            "fontSize": "13px",
            "padding": "6px 10px",
            "textAlign": "left",
        },
        style_cell_conditional=[
            {"if": {"column_type": "numeric"}, "textAlign": "right"},
        ],
        style_data_conditional=conditional,
        css=[{"selector": ".dash-spreadsheet-menu", "rule": "display: none"}],
    )
