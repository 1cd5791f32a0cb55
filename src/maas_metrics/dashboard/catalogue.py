"""The MaaS Token Metrics panel catalogue, built from the config.

`build_catalogue(config)` returns every panel once — the nine panels of the
reference dashboard (ids 1-9, keys below), the rate-limit, success-rate,
model, tier-distribution and revenue panels its README promises, and quota
headroom — with their queries, units and layout. Renderers (Grafana JSON,
the built-in web page) and the report read it; none defines queries itself.

Namespaces: hits of the request policy count requests, not tokens, so every
token / hits / cost query excludes the source's request namespaces
(`policies.request_namespaces`: the gateway's request namespace, or the
Kuadrant request routes, possibly none) through the hidden constant variable
`$request_namespace` (`limitador_namespace!~`), whatever `$namespace` is set
to; any other namespace (several token namespaces or routes) counts.
Rate-limit and success-rate queries cover the calls of both policies.

Source (`config.source`): with `kuadrant`, Limitador produces the metrics,
so the schema has no `model` on calls and none of our gateway's series
(`Schema.gateway_series`): quota headroom reads the limits-as-data rules
(`rules.limits`), and the gateway-only panels (`GATEWAY_PANELS`: latency
histograms, upstream errors, budget) keep their place with no query and a
description that says why, rather than an empty chart that looks like no
traffic.

Schema (`contract.Schema`, from the config): the billing dimension (`tier`
or `subscription`) names the by-tier panels, the dimension filter and the
price vector's label; each captured attribution label gets a filter and a
cost breakdown (`dashboard.breakdowns`); with `user` not captured, the
panels that need it keep their place and say so (no query, a no-data text);
when the calls counters carry no `model`, the panels built on them cover
every model whatever `$model` says, and their descriptions say so (a join on
users who used the model would count their calls of other models too).

Variables: datasource; namespace, tier, user, model (multi-select, All =
`.*`; user narrowed by namespace and tier, only-limited users included), then
one per captured attribution label;
hidden: request_namespace (constant) and table_users (the detailed table's
`DETAIL_USERS` most active users, a `top` variable: resolve it with
`variables.top_values` and pass it to `expand(options=...)`, or leave it
out to list every row, as the report does).

Panel keys: total_hits, hits_rate_by_tier, hits_by_user_tier, top_users,
hourly_hits_by_user, hits_by_tier, active_users, top_cost_users, details,
success_rate, total_cost, calls_by_tier, success_rate_by_tier,
tier_distribution, model_popularity, revenue_by_tier, quota_headroom.

Modules: this one assembles the rows and applies the schema's notes; each
row's panels are built in their own module (`overview_panels`,
`trend_panels`, `user_panels`, `tier_panels`, `quota_panels`,
`detail_panel`, then `breakdowns`, `budget_panel`, `latency_panels`) from the
shared expressions of `panel_context`; the variables in `filter_variables`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from maas_metrics.config import Config
from maas_metrics.dashboard import (
    breakdowns,
    detail_panel,
    overview_panels,
    quota_panels,
    tier_panels,
    trend_panels,
    user_panels,
)
from maas_metrics.dashboard.budget_panel import budget_panel
from maas_metrics.dashboard.detail_panel import DETAIL_LABELS, DETAIL_USERS, detail_labels
from maas_metrics.dashboard.filter_variables import (
    table_users_variable,
    top_users_variable,
    variables,
)
from maas_metrics.dashboard.latency_panels import bottom, latency_panels
from maas_metrics.dashboard.model import Catalogue, Panel, TierStyle
from maas_metrics.dashboard.panel_context import TITLES, PanelContext
from maas_metrics.dashboard.prices import price_vectors
from maas_metrics.dashboard.promql import Counters
from maas_metrics.dashboard.trend_panels import RATE_PANEL_POINTS

__all__ = [
    "CALLS_PANELS",
    "DETAIL_LABELS",
    "DETAIL_USERS",
    "GATEWAY_PANELS",
    "NO_GATEWAY",
    "NO_MODEL_ON_CALLS",
    "NO_USER",
    "RATE_PANEL_POINTS",
    "TITLES",
    "USER_PANELS",
    "build_catalogue",
    "detail_labels",
    "table_users_variable",
    "top_users_variable",
    "variables",
]

NO_USER = (
    "Needs the `user` label, which this schema does not capture (schema.capture_user: false, "
    "as the platform does by default to keep the series count low)."
)
NO_MODEL_ON_CALLS = (
    " The calls counters carry no `model` label in this schema (Limitador labels them before "
    "the model is known), so this panel covers every model whatever the model filter says."
)
USER_PANELS = frozenset(
    {
        "active_users",
        "hourly_hits_by_user",
        "hits_by_user_tier",
        "top_users",
        "top_cost_users",
        "tier_distribution",
        "quota_headroom",
    }
)
"""Panels about single users: without `user` they keep their place and say why they are empty."""

NO_GATEWAY = (
    "Needs the maas-metrics gateway's own series, which a Kuadrant cluster does not have "
    "(source: kuadrant: Limitador produces the metrics and has no latency histograms, "
    "upstream error counters or budgets)."
)
GATEWAY_PANELS = frozenset(
    {
        "request_duration",
        "time_to_first_token",
        "time_per_output_token",
        "upstream_error_rate",
        "budget_used",
    }
)
"""Panels read only from our gateway's series: without them (source kuadrant) they say why."""

CALLS_PANELS = frozenset({"success_rate", "calls_by_tier", "success_rate_by_tier", "details"})
"""Panels built on the calls counters (cover every model when those carry no `model`)."""


def build_catalogue(
    config: Config,
    *,
    recording_rules: bool = False,
    price_date: date | None = None,
    detail_users: int = DETAIL_USERS,
) -> Catalogue:
    """The catalogue for `config`: prices on `price_date` (default today), raw or recorded series.

    `detail_users`: how many of the most active users the detailed table lists.
    """
    day = price_date or date.today()
    schema = config.contract
    counters = Counters(recording_rules, schema)
    ctx = PanelContext(config, counters, price_vectors(config, day))
    top = (table_users_variable(counters, detail_users, schema),) if schema.user else ()
    return Catalogue(
        title=config.dashboard.title,
        uid=config.dashboard.uid,
        description=(
            "Token usage, rate limiting, tiers and cost of the MaaS platform from Kuadrant / "
            f"Limitador metrics. Generated by maas-metrics; prices as of {day.isoformat()}."
        ),
        panels=panels(ctx),
        variables=(
            *variables(config),
            *top,
            *(
                (top_users_variable(counters, config.dashboard.top_users, schema),)
                if schema.user
                else ()
            ),
        ),
        tiers=tuple(TierStyle(t.name, t.level, t.colour) for t in config.tiers_by_level()),
        refresh=config.dashboard.refresh,
        time_from=config.dashboard.default_range,
        price_date=day,
        recording_rules=recording_rules,
    )


def panels(ctx: PanelContext) -> tuple[Panel, ...]:
    """Every panel, row by row from the top, each with its schema's notes."""
    out = [
        *overview_panels.row(ctx),
        *trend_panels.rows(ctx),
        *user_panels.row(ctx),
        *tier_panels.row(ctx),
    ]
    headroom = quota_panels.quota_headroom(ctx)
    if headroom is not None:
        out.append(headroom)
    out.append(detail_panel.details(ctx))
    out += breakdowns.panels(ctx.schema, ctx.cost, ctx.hits)
    budget = budget_panel(ctx.config, bottom(out))  # only with a budget configured
    if budget is not None:
        out.append(budget)
    out.extend(latency_panels(bottom(out), ctx.dim))  # the "Latency & health" row
    return tuple(_schema_notes(ctx, p) for p in out)


def _schema_notes(ctx: PanelContext, panel: Panel) -> Panel:
    """What this schema changes: no `user` -> the panel says so; no `model` on calls -> noted."""
    schema = ctx.schema
    if not schema.gateway_series and panel.key in GATEWAY_PANELS:
        return replace(panel, targets=(), description=NO_GATEWAY, no_data=NO_GATEWAY)
    if not schema.user and panel.key in USER_PANELS:
        return replace(panel, targets=(), description=NO_USER, no_data=NO_USER, columns=())
    if not schema.calls_model and panel.key in CALLS_PANELS:
        return replace(panel, description=panel.description + NO_MODEL_ON_CALLS)
    return panel
