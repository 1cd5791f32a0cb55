"""Render the catalogue as Grafana dashboard JSON with grafana-foundation-sdk.

The output is importable (an `__inputs` entry `DS_PROMETHEUS` makes
Grafana's Import ask for the Prometheus datasource) and deterministic: the
same catalogue gives byte-identical JSON. Panels and targets use the
`$datasource` variable, whose default is the imported datasource.
"""

from __future__ import annotations

import json
import re
from typing import Any

from grafana_foundation_sdk.builders import barchart as barchart_builder
from grafana_foundation_sdk.builders import bargauge as bargauge_builder
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import piechart as piechart_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.builders import stat as stat_builder
from grafana_foundation_sdk.builders import table as table_builder
from grafana_foundation_sdk.builders import timeseries as timeseries_builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import piechart as piechart_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from maas_metrics import contract
from maas_metrics.dashboard.model import (
    TIER_LEGEND_SEPARATOR,
    Catalogue,
    Panel,
    Target,
    Variable,
)

DATASOURCE_INPUT = "DS_PROMETHEUS"
DATASOURCE_VARIABLE = "datasource"
MINIMUM_GRAFANA = "10.0.0"

PanelBuilder = Any  # the SDK's panel builders share their method names but no base class


def datasource_ref() -> models.DataSourceRef:
    return models.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")


def _js_regex_escape(text: str) -> str:
    return re.sub(r"[.*+?^${}()|\[\]\\/]", lambda m: "\\" + m.group(0), text)


def tier_regex(tier: str) -> str:
    """Grafana field matcher regex for series whose legend ends with `tier` (see model.py)."""
    return f"/^(?:.*{_js_regex_escape(TIER_LEGEND_SEPARATOR)})?{_js_regex_escape(tier)}$/"


def _fixed_colour(colour: str) -> models.DynamicConfigValue:
    return models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})


def _thresholds(panel: Panel) -> dashboard_builder.ThresholdsConfig:
    steps = [models.Threshold(value=t.value, color=t.colour) for t in panel.thresholds]
    if not steps:
        steps = [models.Threshold(value=None, color="green")]
    return dashboard_builder.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps)


def _query(target: Target) -> prometheus_builder.Dataquery:
    query = (
        prometheus_builder.Dataquery()
        .ref_id(target.ref_id)
        .expr(target.expr)
        .datasource(datasource_ref())
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
        .legend_format(target.legend or "__auto")
    )
    query = query.instant() if target.instant else query.range()
    if target.table:
        query = query.format(prometheus_models.PromQueryFormat.TABLE)
    if target.min_step:
        query = query.interval(target.min_step)
    return query


def _reduce_last() -> common_builder.ReduceDataOptions:
    return common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _legend(
    placement: common.LegendPlacement = common.LegendPlacement.BOTTOM,
) -> common_builder.VizLegendOptions:
    return (
        common_builder.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(placement)
    )


def _palette() -> dashboard_builder.FieldColor:
    return dashboard_builder.FieldColor().mode(models.FieldColorModeId.PALETTE_CLASSIC)


def _threshold_colours() -> dashboard_builder.FieldColor:
    return dashboard_builder.FieldColor().mode(models.FieldColorModeId.THRESHOLDS)


def _stat(panel: Panel) -> PanelBuilder:
    return (
        stat_builder.Panel()
        .reduce_options(_reduce_last())
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .color_scheme(_threshold_colours() if panel.thresholds else _palette())
    )


def _timeseries(panel: Panel) -> PanelBuilder:
    builder = (
        timeseries_builder.Panel()
        .legend(_legend())
        .line_width(2)
        .fill_opacity(10)
        .color_scheme(_palette())
        .tooltip(
            common_builder.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if panel.stacked:
        builder = builder.stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    for target in panel.targets:
        if target.dashed:
            builder = builder.with_override(
                models.MatcherConfig(id_val="byFrameRefID", options=target.ref_id),
                [
                    models.DynamicConfigValue(
                        id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                    )
                ],
            )
    return builder


def _barchart(panel: Panel) -> PanelBuilder:
    builder = (
        barchart_builder.Panel()
        .x_field("Time")
        .legend(_legend())
        .show_value(common.VisibilityMode.NEVER)
        .x_tick_label_spacing(100)
        .color_scheme(_palette())
        .fill_opacity(80)
        .with_transformation(
            models.DataTransformerConfig(
                id_val="joinByField", options={"byField": "Time", "mode": "outer"}
            )
        )
    )
    if panel.stacked:
        builder = builder.stacking(common.StackingMode.NORMAL)
    return builder


def _bargauge(panel: Panel) -> PanelBuilder:
    return (
        bargauge_builder.Panel()
        .reduce_options(_reduce_last())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .min_viz_height(16)
        .color_scheme(_threshold_colours() if panel.thresholds else _palette())
    )


def _piechart(panel: Panel) -> PanelBuilder:
    del panel
    return (
        piechart_builder.Panel()
        .reduce_options(_reduce_last())
        .pie_type(piechart_models.PieChartType.DONUT)
        .display_labels([piechart_models.PieChartLabels.PERCENT])
        .legend(
            piechart_builder.PieChartLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .values(
                [
                    piechart_models.PieChartLegendValues.VALUE,
                    piechart_models.PieChartLegendValues.PERCENT,
                ]
            )
        )
        .color_scheme(_palette())
    )


def _table(panel: Panel, catalogue: Catalogue) -> PanelBuilder:
    index = {column.grafana_field: i for i, column in enumerate(panel.columns)}
    rename = {column.grafana_field: column.title for column in panel.columns}
    builder = (
        table_builder.Panel()
        .with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": index,
                    "renameByName": rename,
                },
            )
        )
        .sort_by(
            [
                common_builder.TableSortByFieldState()
                .display_name(panel.columns[-1].title)
                .desc(True)
            ]
        )
        .footer(common_builder.TableFooterOptions().show(False))
    )
    for column in panel.columns:
        properties: list[models.DynamicConfigValue] = []
        if column.unit:
            properties.append(models.DynamicConfigValue(id_val="unit", value=column.unit))
        if column.decimals is not None:
            properties.append(models.DynamicConfigValue(id_val="decimals", value=column.decimals))
        if properties:
            builder = builder.override_by_name(column.title, properties)
    if panel.colour_by_tier:
        tier_column = next(
            (c.title for c in panel.columns if c.label in contract.BILLING_DIMENSIONS), None
        )
        if tier_column is not None:
            mapping = {
                "type": "value",
                "options": {
                    t.name: {"color": t.colour, "index": i} for i, t in enumerate(catalogue.tiers)
                },
            }
            builder = builder.override_by_name(
                tier_column,
                [
                    models.DynamicConfigValue(id_val="mappings", value=[mapping]),
                    models.DynamicConfigValue(
                        id_val="custom.cellOptions", value={"type": "color-text"}
                    ),
                ],
            )
    return builder


def _panel(panel: Panel, catalogue: Catalogue) -> PanelBuilder:
    match panel.kind:
        case "stat":
            builder = _stat(panel)
        case "timeseries":
            builder = _timeseries(panel)
        case "barchart":
            builder = _barchart(panel)
        case "bargauge":
            builder = _bargauge(panel)
        case "piechart":
            builder = _piechart(panel)
        case "table":
            builder = _table(panel, catalogue)
    builder = (
        builder.id(panel.id)
        .title(panel.title)
        .description(panel.description)
        .datasource(datasource_ref())
        .grid_pos(models.GridPos(h=panel.grid.h, w=panel.grid.w, x=panel.grid.x, y=panel.grid.y))
        .unit(panel.unit)
        .thresholds(_thresholds(panel))
        .targets([_query(t) for t in panel.targets])
    )
    if panel.no_data:
        builder = builder.no_value(panel.no_data)
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    if panel.min_value is not None:
        builder = builder.min(panel.min_value)
    if panel.max_value is not None:
        builder = builder.max(panel.max_value)
    if panel.max_data_points is not None:
        builder = builder.max_data_points(panel.max_data_points)
    if panel.colour_by_tier and panel.kind != "table":
        for tier in catalogue.tiers:
            builder = builder.override_by_regexp(
                tier_regex(tier.name), [_fixed_colour(tier.colour)]
            )
    return builder


def _variable(variable: Variable) -> Any:
    if variable.kind == "datasource":
        return (
            dashboard_builder.DatasourceVariable(variable.name)
            .label(variable.label)
            .description(variable.description)
            .type(variable.value)
            .current(
                models.VariableOption(
                    selected=True, text="Prometheus", value=f"${{{DATASOURCE_INPUT}}}"
                )
            )
        )
    if variable.kind == "constant":
        return (
            dashboard_builder.ConstantVariable(variable.name)
            .label(variable.label)
            .description(variable.description)
            .value(variable.value)
        )
    if variable.kind == "top":
        # Every option stays selected ("All" without an allValue joins them all as a regex).
        return (
            dashboard_builder.QueryVariable(variable.name)
            .label(variable.label)
            .description(variable.description)
            .datasource(datasource_ref())
            .query(variable.query)
            .regex(f'/{variable.label_name}="([^"]+)"/')
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .hide(models.VariableHide.HIDE_VARIABLE)
        )
    builder = (
        dashboard_builder.QueryVariable(variable.name)
        .label(variable.label)
        .description(variable.description)
        .datasource(datasource_ref())
        .query(variable.query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(variable.multi)
        .include_all(variable.include_all)
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    if variable.all_value is not None:
        builder = builder.all_value(variable.all_value)
    if variable.hidden:
        builder = builder.hide(models.VariableHide.HIDE_VARIABLE)
    return builder


def _requires(catalogue: Catalogue) -> list[dict[str, str]]:
    kinds = sorted({p.kind for p in catalogue.panels})
    return [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": MINIMUM_GRAFANA},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *({"type": "panel", "id": kind, "name": kind, "version": ""} for kind in kinds),
    ]


def dashboard(catalogue: Catalogue, *, importable: bool = True) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict.

    `importable`: add `__inputs` / `__requires` for Grafana's Import (and for
    grafana-operator's datasource mapping); without it (a sidecar ConfigMap,
    which nothing rewrites) the datasource variable starts on Grafana's default.
    """
    builder = (
        dashboard_builder.Dashboard(catalogue.title)
        .uid(catalogue.uid)
        .description(catalogue.description)
        .tags(list(catalogue.tags))
        .timezone("browser")
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .time(catalogue.time_from, catalogue.time_to)
        .refresh(catalogue.refresh)
    )
    for variable in catalogue.variables:
        builder = builder.with_variable(_variable(variable))
    for panel in catalogue.panels:
        builder = builder.with_panel(_panel(panel, catalogue))
    body: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    if not importable:
        for variable in body["templating"]["list"]:
            if variable["type"] == "datasource":
                variable["current"] = {}
        return body
    inputs = [
        {
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes Limitador (or the maas-metrics gateway)",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    return {"__inputs": inputs, "__requires": _requires(catalogue), **body}


def render_json(catalogue: Catalogue, *, importable: bool = True) -> str:
    """The dashboard JSON text: 2-space indent, UTF-8 (emoji kept), trailing newline."""
    return (
        json.dumps(dashboard(catalogue, importable=importable), indent=2, ensure_ascii=False) + "\n"
    )
