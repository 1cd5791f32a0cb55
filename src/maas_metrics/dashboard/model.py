"""The panel catalogue as plain data, independent of any renderer.

The Grafana JSON renderer, the built-in web dashboard and the report all read
these frozen dataclasses, so a panel (title, queries, unit, layout) is defined
exactly once. Query expressions are Grafana-templated PromQL: they may use
`$namespace`, `$tier`, `$user`, `$model` (multi-select with All), the hidden
constant `$request_namespace`, and Grafana's `$__range`, `$__rate_interval`
and `$__interval`. Expand them with `maas_metrics.dashboard.variables.expand`
to run the very query Grafana runs.

Conventions every renderer can rely on:

* by-tier series carry a `tier` label (or `subscription`, the billing
  dimension of today's schema: one of `contract.BILLING_DIMENSIONS`); in
  Grafana their legend ends with the tier name (`{{tier}}` or `... · {{tier}}`), which is how tier colours are
  attached as overrides (see `TIER_LEGEND_SEPARATOR`);
* an instant target returns one value per series (evaluate it at the end of
  the range); a range target is evaluated over the range with a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

PanelKind = Literal["stat", "timeseries", "barchart", "bargauge", "piechart", "table"]
VariableKind = Literal["datasource", "query", "constant", "top"]

#: Separator before the tier name at the end of a by-tier legend (`alice · free`).
TIER_LEGEND_SEPARATOR = " · "


@dataclass(frozen=True, slots=True)
class Target:
    """One PromQL query of a panel.

    `legend` is a Grafana legend format (`{{tier}}`); `instant` selects an
    instant query at the end of the range (else a range query); `table`
    asks Grafana for table-formatted frames (used by the detailed table);
    `min_step` is Grafana's per-query "Min step" (`interval` in the JSON),
    e.g. `1h` for hourly buckets, empty for the default; `dashed` draws
    the series with a dashed line (to tell e.g. limited from allowed calls
    when both share the tier colours); `description` says what the value is.
    """

    ref_id: str
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    min_step: str = ""
    description: str = ""
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Grid:
    """Position on Grafana's 24-column grid (`h` in grid rows of 30 px)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table panel: either a series label or the value of one target."""

    title: str
    label: str | None = None
    ref_id: str | None = None
    unit: str = ""
    decimals: int | None = None

    def __post_init__(self) -> None:
        if (self.label is None) == (self.ref_id is None):
            raise ValueError(f"column {self.title!r}: set exactly one of label and ref_id")

    @property
    def grafana_field(self) -> str:
        """The field name Grafana gives this column when it merges table-format frames."""
        return self.label if self.label is not None else f"Value #{self.ref_id}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A colour step: from `value` upwards (None = the base step) the value is shown in `colour`."""

    colour: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Panel:
    """One visualisation: what it shows (targets), how (kind, unit) and where (grid).

    `key` is a stable machine name (`total_hits`) for code that picks panels;
    `colour_by_tier` means every series has a `tier` label and takes that
    tier's colour; `columns` lists a table's columns in order; `stacked`
    stacks series (timeseries, barchart); `thresholds` colour single values
    (e.g. quota usage green / orange / red); `max_value`/`min_value` bound gauges;
    `max_data_points` caps a range panel's points (Grafana's panel option of that
    name; None: Grafana's default, about the panel's width in pixels), which
    sets the step: how many samples a query over thousands of series keeps in
    memory at once (Prometheus refuses a query over `--query.max-samples`).
    """

    id: int
    key: str
    title: str
    description: str
    kind: PanelKind
    unit: str
    targets: tuple[Target, ...]
    grid: Grid
    colour_by_tier: bool = False
    columns: tuple[Column, ...] = ()
    decimals: int | None = None
    stacked: bool = False
    thresholds: tuple[Threshold, ...] = ()
    min_value: float | None = None
    max_data_points: int | None = None
    max_value: float | None = None
    no_data: str = ""
    """What to show instead of "No data" (e.g. why a panel has no query in this schema)."""

    def target(self, ref_id: str) -> Target:
        for target in self.targets:
            if target.ref_id == ref_id:
                return target
        raise KeyError(f"panel {self.key!r} has no target {ref_id!r}")


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable.

    * `datasource`: picks the Prometheus datasource (`value` is the plugin id).
    * `query`: the values of label `label_name` on the series matching
      `match` (a templated series selector, so `$tier` narrows `$user`);
      Grafana runs `label_values(match, label_name)` over the dashboard range.
      With `include_all`, "All" interpolates to `all_value` (unescaped).
    * `constant`: a hidden fixed `value`; already a regex, interpolated as is
      (only backslashes and quotes are escaped for the PromQL string).
    * `top`: the values of label `label_name` on the `limit` series that
      `expr` ranks highest (Grafana: `query_result(topk(limit, expr))`, all
      options selected, hidden). The detailed table uses it to list only the
      most active users, so it stays fast with 10,000+ users.
    """

    name: str
    label: str
    kind: VariableKind
    description: str = ""
    label_name: str = ""
    match: str = ""
    value: str = ""
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    hidden: bool = False
    expr: str = ""
    limit: int = 0

    @property
    def query(self) -> str:
        """Grafana's variable query for a `query` or `top` variable."""
        if self.kind == "query":
            return f"label_values({self.match}, {self.label_name})"
        if self.kind == "top":
            return f"query_result({self.top_expr})"
        raise ValueError(f"variable {self.name!r} is a {self.kind} variable, not a query")

    @property
    def top_expr(self) -> str:
        """For a `top` variable: the PromQL whose result's `label_name` values are the options."""
        if self.kind != "top":
            raise ValueError(f"variable {self.name!r} is not a top variable")
        return f"topk({self.limit}, {self.expr})"


@dataclass(frozen=True, slots=True)
class TierStyle:
    """A configured tier as the dashboards show it."""

    name: str
    level: int
    colour: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Everything a renderer needs: panels in display order, variables, tiers, time settings.

    `price_date` is the day whose prices the cost panels use; `recording_rules`
    tells whether the panels read the pre-aggregated recording-rule series.
    """

    title: str
    uid: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    tiers: tuple[TierStyle, ...]
    refresh: str
    time_from: str
    price_date: date
    recording_rules: bool
    time_to: str = "now"
    tags: tuple[str, ...] = field(default=("maas", "kuadrant", "limitador", "tokens"))

    def panel(self, key: str) -> Panel:
        for panel in self.panels:
            if panel.key == key:
                return panel
        raise KeyError(f"no panel {key!r}")

    def variable(self, name: str) -> Variable:
        for variable in self.variables:
            if variable.name == name:
                return variable
        raise KeyError(f"no variable {name!r}")

    @property
    def tier_colours(self) -> Mapping[str, str]:
        """Tier name -> colour (a Grafana colour name or `#rrggbb`)."""
        return {tier.name: tier.colour for tier in self.tiers}
