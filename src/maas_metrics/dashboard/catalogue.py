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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from maas_metrics import contract
from maas_metrics.config import Config, Tier
from maas_metrics.contract import Schema
from maas_metrics.dashboard import breakdowns
from maas_metrics.dashboard.budget_panel import budget_panel
from maas_metrics.dashboard.latency_panels import bottom, latency_panels
from maas_metrics.dashboard.model import (
    Catalogue,
    Column,
    Grid,
    Panel,
    Target,
    Threshold,
    TierStyle,
    Variable,
)
from maas_metrics.dashboard.promql import (
    NAMESPACE,
    NOT_REQUEST_NAMESPACE,
    REQUEST_NAMESPACE,
    Counters,
    Filters,
    PriceVectors,
    by,
    label_filter,
    or_zero,
    price_vectors,
    re2_escape,
    selector,
    success_ratio,
    top_and_others,
)
from maas_metrics.dashboard.variables import ALL_VALUE
from maas_metrics.policies import request_namespaces
from maas_metrics.promql import increase_exact, preferred, string_literal
from maas_metrics.rules.limits import quota

#: Max data points of the per-tier rate panels. Their raw queries compute each
#: series' exact growth at every step before summing by tier, so Prometheus
#: holds about 4 x series x steps samples: 50 points keep 10,000 users x 5
#: models (210,000 series) at 30 s scrapes within 40-60 % of its default
#: 50,000,000-sample limit for any range (1 h: 1 min steps; 24 h: 30 min;
#: 7 days: 3 h), where Grafana's default (the panel's width, ~1,000 points) is
#: refused. Measured: tests/test_scale_sample_limit.py, benchmarks/bench_scale.py.
RATE_PANEL_POINTS = 50

HITS = contract.HITS
CALLS = contract.CALLS
LIMITED = contract.LIMITED
USER = contract.USER
MODEL = contract.MODEL


def detail_labels(schema: Schema) -> tuple[str, ...]:
    """The detailed table's row key: namespace, user?, dimension, attribution, model (if on calls)."""
    model = (MODEL,) if schema.calls_model else ()
    return (contract.NAMESPACE, *schema.identity_labels, *model)


DETAIL_LABELS = detail_labels(contract.SEED)
"""The row key of the detailed table (and of the report's finest grouping) in the seed's schema."""


def _names(schema: Schema, counters: tuple[str, ...]) -> str:
    """`__name__=~"a|b"`: every name the schema reads the counters under."""
    names = [n for c in counters for n in schema.names_of(c)]
    return f'__name__=~"{"|".join(names)}"'


NO_USER = (
    "Needs the `user` label, which this schema does not capture (schema.capture_user: false, "
    "as the platform does by default to keep the series count low)."
)
NO_MODEL_ON_CALLS = (
    " The calls counters carry no `model` label in this schema (Limitador labels them before "
    "the model is known), so this panel covers every model whatever the model filter says."
)

DIMENSION_WORDS = {contract.TIER: "service tier", contract.SUBSCRIPTION: "subscription"}

#: Display names of the labels, for titles and filters.
TITLES = {
    contract.TIER: "Tier",
    contract.SUBSCRIPTION: "Subscription",
    contract.ORGANIZATION: "Organization",
    contract.COST_CENTER: "Cost Centre",
    contract.GROUP: "Group",
    contract.TENANT: "Tenant",
}

DETAIL_USERS = 100
"""The detailed table lists the rows of this many users: the most active (policy checks) ones."""

TABLE_USERS = 'user=~"$table_users"'
USER_FILTER = label_filter(USER)

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

TOP_USERS = 'user=~"$top_users"'
"""The per-user panels' users: the config's `dashboard.top_users` with the most hits; the rest is "others"."""


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
    builder = _Builder(config, counters, price_vectors(config, day))
    top = (table_users_variable(counters, detail_users, schema),) if schema.user else ()
    return Catalogue(
        title=config.dashboard.title,
        uid=config.dashboard.uid,
        description=(
            "Token usage, rate limiting, tiers and cost of the MaaS platform from Kuadrant / "
            f"Limitador metrics. Generated by maas-metrics; prices as of {day.isoformat()}."
        ),
        panels=builder.panels(),
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


def variables(config: Config) -> tuple[Variable, ...]:
    """The datasource, the filters (multi-select, All = `.*`) and the request-namespace constant."""
    schema = config.contract
    dim = schema.dimension
    calls = _names(schema, (CALLS, LIMITED))

    def usage(*matchers: str, names: str = calls) -> str:
        return "{" + ", ".join((names, *matchers)) + "}"

    def filter_variable(name: str, label: str, label_name: str, match: str, why: str) -> Variable:
        return Variable(
            name=name,
            label=label,
            kind="query",
            description=why,
            label_name=label_name,
            match=match,
            multi=True,
            include_all=True,
            all_value=ALL_VALUE,
        )

    user: tuple[Variable, ...] = ()
    if schema.user:
        user = (
            filter_variable(
                "user",
                "User",
                "user",
                usage(NAMESPACE, label_filter(dim)),
                f"Users seen in the chosen namespaces and {dim}s, including users who were only "
                "limited.",
            ),
        )
    # `model` from the hits when the calls counters carry none.
    model_names = calls if schema.calls_model else _names(schema, (HITS,))
    attribution = tuple(
        filter_variable(
            contract.variable_name(label),
            TITLES[label],
            label,
            usage(NAMESPACE),
            f"The callers' {label} (attribution label; `{schema.missing_value}` for keys "
            "without one).",
        )
        for label in schema.attribution
    )
    return (
        Variable(
            name="datasource",
            label="Data source",
            kind="datasource",
            description="The Prometheus that scrapes Limitador (or the maas-metrics gateway).",
            value="prometheus",
        ),
        filter_variable(
            "namespace",
            "Namespace",
            "limitador_namespace",
            usage(),
            "limitador_namespace: one per policy (gateway) or per HTTPRoute (Kuadrant). Token "
            "panels never count the request policy's namespaces, whatever is chosen here.",
        ),
        filter_variable(
            dim, TITLES[dim], dim, usage(NAMESPACE), f"The users' {DIMENSION_WORDS[dim]}."
        ),
        *user,
        filter_variable(
            "model", "Model", "model", usage(NAMESPACE, names=model_names), "The model requested."
        ),
        *attribution,
        Variable(
            name="request_namespace",
            label="Request-policy namespace",
            kind="constant",
            description=(
                "Regex of the request policy's limitador_namespaces, excluded from token panels "
                "(empty: no request policy, as on a Kuadrant cluster with token routes only)."
            ),
            value="|".join(re2_escape(n) for n in request_namespaces(config)),
            hidden=True,
        ),
    )


def table_users_variable(
    counters: Counters, limit: int, schema: Schema = contract.SEED
) -> Variable:
    """The `limit` users with the most policy checks (allowed + limited) in the range and filters."""
    if limit < 1:
        raise ValueError("the detailed table needs at least one user")
    return Variable(
        name="table_users",
        label="Most active users",
        kind="top",
        description=f"The {limit} users with the most allowed + limited calls: the detailed table's rows.",
        label_name="user",
        expr=counters.checks_total(Filters(schema).calls, ("user",)),
        limit=limit,
        hidden=True,
    )


def top_users_variable(counters: Counters, limit: int, schema: Schema = contract.SEED) -> Variable:
    """The `limit` users with the most hits in the range and filters: the per-user panels' rows."""
    return Variable(
        name="top_users",
        label="Top users",
        kind="top",
        description=f"The {limit} users with the most hits; per-user panels sum the rest as others.",
        label_name="user",
        expr=counters.total(HITS, Filters(schema).tokens, (USER,)),
        limit=limit,
        hidden=True,
    )


class _Builder:
    def __init__(self, config: Config, counters: Counters, prices: PriceVectors) -> None:
        self.config = config
        self.c = counters
        self.prices = prices
        self.schema = config.contract
        self.f = Filters(self.schema)
        self.dim = self.schema.dimension
        self.Dim = TITLES[self.dim]

    def legend(self, *labels: str) -> str:
        """`{{user}} · {{tier}}`: by-dimension legends end with the dimension (tier colours)."""
        return " · ".join("{{" + label + "}}" for label in labels)

    # --- expressions shared by several panels ------------------------------------------------

    def hits(self, labels: tuple[str, ...]) -> str:
        return self.c.total(HITS, self.f.tokens, labels)

    def top_hits(self, labels: tuple[str, ...]) -> str:
        """Hits by `labels` (with `user`) of the top users, plus one row for all the others."""
        return top_and_others(
            self.c.total(HITS, (*self.f.tokens, TOP_USERS), labels),
            self.c.total(HITS, self.f.tokens, labels),
        )

    def cost(self, labels: tuple[str, ...], matchers: tuple[str, ...] | None = None) -> str:
        matchers = self.f.tokens if matchers is None else matchers
        keys = tuple(dict.fromkeys((*labels, self.dim, MODEL)))
        return f"{by(labels)} {self.prices.cost(self.c.total(HITS, matchers, keys))}"

    def active(self, labels: tuple[str, ...]) -> str:
        """Users (by `labels`, which include `user`) with at least one allowed or limited call."""
        calls = self.c.total(CALLS, self.f.calls, labels)
        limited = self.c.total(LIMITED, self.f.calls, labels)
        return f"(({calls}) > 0 or ({limited}) > 0)"

    # --- the panels ----------------------------------------------------------------------------

    def panels(self) -> tuple[Panel, ...]:
        user = self._per_user
        panels = [
            self.total_hits(),
            user(self.active_users),
            self.success_rate(),
            self.total_cost(),
            self.hits_rate_by_tier(),
            self.calls_by_tier(),
            self.success_rate_by_tier(),
            user(self.hourly_hits_by_user),
            user(self.hits_by_user_tier),
            user(self.top_users),
            user(self.top_cost_users),
            self.hits_by_tier(),
            user(self.tier_distribution),
            self.model_popularity(),
            self.revenue_by_tier(),
        ]
        headroom = self.quota_headroom()
        if headroom is not None:
            panels.append(headroom)
        panels.append(self.details())
        panels += breakdowns.panels(self.schema, self.cost, self.hits)
        budget = budget_panel(self.config, bottom(panels))  # only with a budget configured
        if budget is not None:
            panels.append(budget)
        panels.extend(latency_panels(bottom(panels), self.dim))  # the "Latency & health" row
        return tuple(self._schema_notes(p) for p in panels)

    def _per_user(self, build: Callable[[], Panel]) -> Panel:
        """A panel about single users; without `user` only its place and title are kept
        (built from raw counters, as the recording rules keep no `user` then)."""
        if self.schema.user:
            return build()
        saved, self.c = self.c, replace(self.c, recording_rules=False)
        try:
            return build()
        finally:
            self.c = saved

    def _schema_notes(self, panel: Panel) -> Panel:
        """What this schema changes: no `user` -> the panel says so; no `model` on calls -> noted."""
        if not self.schema.gateway_series and panel.key in GATEWAY_PANELS:
            return replace(panel, targets=(), description=NO_GATEWAY, no_data=NO_GATEWAY)
        if not self.schema.user and panel.key in USER_PANELS:
            return replace(panel, targets=(), description=NO_USER, no_data=NO_USER, columns=())
        if not self.schema.calls_model and panel.key in CALLS_PANELS:
            return replace(panel, description=panel.description + NO_MODEL_ON_CALLS)
        return panel

    def total_hits(self) -> Panel:
        return Panel(
            id=1,
            key="total_hits",
            title="🎯 Total Authorized Hits",
            description=(
                "Tokens the token policy admitted in the selected range (authorized_hits of the "
                "token namespaces; request-policy hits excluded). Exact across counter resets."
            ),
            kind="stat",
            unit="short",
            targets=(Target("A", or_zero(self.hits(())), legend="hits", instant=True),),
            grid=Grid(0, 0, 6, 4),
        )

    def active_users(self) -> Panel:
        return Panel(
            id=7,
            key="active_users",
            title="👥 Active Users",
            description="Users with at least one allowed or limited call in the selected range.",
            kind="stat",
            unit="short",
            targets=(
                Target(
                    "A", or_zero(f"count({self.active((USER,))})"), legend="users", instant=True
                ),
            ),
            grid=Grid(6, 0, 6, 4),
        )

    def success_rate(self) -> Panel:
        allowed = self.c.total(CALLS, self.f.calls, ())
        limited = self.c.total(LIMITED, self.f.calls, ())
        checks = self.c.checks_total(self.f.calls, ())
        return Panel(
            id=10,
            key="success_rate",
            title="✅ Success Rate",
            description=(
                "authorized_calls / (authorized_calls + limited_calls) over the selected range, "
                "policy checks of both policies."
            ),
            kind="stat",
            unit="percentunit",
            decimals=1,
            targets=(
                Target(
                    "A",
                    success_ratio(allowed, limited, checks),
                    legend="success rate",
                    instant=True,
                ),
            ),
            grid=Grid(12, 0, 6, 4),
            thresholds=(Threshold("red"), Threshold("orange", 0.8), Threshold("green", 0.95)),
        )

    def total_cost(self) -> Panel:
        return Panel(
            id=11,
            key="total_cost",
            title="🧾 Total Cost",
            description=(
                f"Authorized hits of the range times each {self.dim}'s price per hit from the "
                f"config (every configured {self.dim})."
            ),
            kind="stat",
            unit="currencyUSD",
            decimals=2,
            targets=(Target("A", or_zero(self.cost(())), legend="cost", instant=True),),
            grid=Grid(18, 0, 6, 4),
        )

    def hits_rate_by_tier(self) -> Panel:
        return Panel(
            id=2,
            key="hits_rate_by_tier",
            title=f"📈 Authorized Hits Rate by {self.Dim}",
            description=f"Tokens admitted per second, per {self.dim} (token namespaces only).",
            kind="timeseries",
            unit="short",
            targets=(
                Target(
                    "A", self.c.rate(HITS, self.f.tokens, (self.dim,)), legend=self.legend(self.dim)
                ),
            ),
            grid=Grid(0, 4, 12, 8),
            colour_by_tier=True,
            max_data_points=RATE_PANEL_POINTS,
        )

    def calls_by_tier(self) -> Panel:
        return Panel(
            id=12,
            key="calls_by_tier",
            title=f"🚦 Allowed vs Limited Calls by {self.Dim}",
            description=(
                "Policy checks per second that were allowed (solid) or rate-limited with HTTP 429 "
                f"(dashed), per {self.dim}, for both the request and the token policy."
            ),
            kind="timeseries",
            unit="reqps",
            targets=(
                Target(
                    "A",
                    self.c.rate(CALLS, self.f.calls, (self.dim,)),
                    legend="allowed · " + self.legend(self.dim),
                ),
                Target(
                    "B",
                    self.c.rate(LIMITED, self.f.calls, (self.dim,)),
                    legend="limited · " + self.legend(self.dim),
                    dashed=True,
                ),
            ),
            grid=Grid(12, 4, 12, 8),
            colour_by_tier=True,
            max_data_points=RATE_PANEL_POINTS,
        )

    def success_rate_by_tier(self) -> Panel:
        allowed = self.c.rate(CALLS, self.f.calls, (self.dim,))
        limited = self.c.rate(LIMITED, self.f.calls, (self.dim,))
        checks = self.c.checks_rate(self.f.calls, (self.dim,))
        return Panel(
            id=13,
            key="success_rate_by_tier",
            title=f"✅ Success Rate by {self.Dim}",
            description=(
                f"authorized_calls / (authorized_calls + limited_calls) per {self.dim} over time; a "
                f"{self.dim} "
                "whose users are only limited shows 0 %."
            ),
            kind="timeseries",
            unit="percentunit",
            decimals=1,
            min_value=0,
            max_value=1,
            targets=(
                Target("A", success_ratio(allowed, limited, checks), legend=self.legend(self.dim)),
            ),
            grid=Grid(0, 12, 12, 8),
            colour_by_tier=True,
            max_data_points=RATE_PANEL_POINTS,
        )

    def hourly_hits_by_user(self) -> Panel:
        return Panel(
            id=5,
            key="hourly_hits_by_user",
            title="⏰ Hourly Authorized Hits by User",
            description=(
                "Tokens admitted per user in each clock hour of the selected range; a bar stands at "
                "its hour's start. The first hour counts from the range's start, the last is the "
                "current hour so far, so the bars add up to the range's total. The top users of "
                "the range, the rest summed as others."
            ),
            kind="barchart",
            unit="short",
            stacked=True,
            targets=(
                Target(
                    "A",
                    top_and_others(
                        self.c.hourly(HITS, (*self.f.tokens, TOP_USERS), (USER,)),
                        self.c.hourly(HITS, self.f.tokens, (USER,)),
                    ),
                    legend="{{user}}",
                    min_step="1h",
                ),
            ),
            grid=Grid(12, 12, 12, 8),
        )

    def hits_by_user_tier(self) -> Panel:
        return Panel(
            id=3,
            key="hits_by_user_tier",
            title=f"👥 Authorized Hits by User & {self.Dim}",
            description=(
                f"Tokens admitted per user in the selected range, coloured by the user's {self.dim}: "
                "the top users, the rest summed as others."
            ),
            kind="bargauge",
            unit="short",
            targets=(
                Target(
                    "A",
                    f"sort_desc({self.top_hits((USER, self.dim))})",
                    legend=self.legend(USER, self.dim),
                    instant=True,
                ),
            ),
            grid=Grid(0, 20, 8, 10),
            colour_by_tier=True,
        )

    def top_users(self) -> Panel:
        return Panel(
            id=4,
            key="top_users",
            title="🏆 Top 10 Users by Hits",
            description="The ten users with the most tokens admitted in the selected range.",
            kind="bargauge",
            unit="short",
            targets=(
                Target(
                    "A",
                    f"sort_desc(topk(10, {self.hits((USER, self.dim))}))",
                    legend=self.legend(USER, self.dim),
                    instant=True,
                ),
            ),
            grid=Grid(8, 20, 8, 10),
            colour_by_tier=True,
        )

    def top_cost_users(self) -> Panel:
        return Panel(
            id=8,
            key="top_cost_users",
            title="💰 Top 5 Users by Cost",
            description=(
                "The five users whose admitted tokens cost most in the selected range, at their "
                f"{self.dim}'s price per hit (model-specific prices where configured)."
            ),
            kind="bargauge",
            unit="currencyUSD",
            decimals=2,
            targets=(
                Target(
                    "A",
                    f"sort_desc(topk(5, {self.cost((USER, self.dim))}))",
                    legend=self.legend(USER, self.dim),
                    instant=True,
                ),
            ),
            grid=Grid(16, 20, 8, 10),
            colour_by_tier=True,
        )

    def hits_by_tier(self) -> Panel:
        return Panel(
            id=6,
            key="hits_by_tier",
            title=f"📊 Total Authorized Hits by {self.Dim}",
            description=(
                f"Tokens admitted per {self.dim} in the selected range (usage by {self.dim})."
            ),
            kind="bargauge",
            unit="short",
            targets=(
                Target("A", self.hits((self.dim,)), legend=self.legend(self.dim), instant=True),
            ),
            grid=Grid(0, 30, 6, 8),
            colour_by_tier=True,
        )

    def tier_distribution(self) -> Panel:
        return Panel(
            id=14,
            key="tier_distribution",
            title=f"🥧 {self.Dim} Distribution",
            description="How the active users of the selected range are spread over the tiers.",
            kind="piechart",
            unit="short",
            targets=(
                Target(
                    "A",
                    f"count by ({self.dim}) ({self.active((USER, self.dim))})",
                    legend=self.legend(self.dim),
                    instant=True,
                ),
            ),
            grid=Grid(6, 30, 6, 8),
            colour_by_tier=True,
        )

    def model_popularity(self) -> Panel:
        return Panel(
            id=15,
            key="model_popularity",
            title="🤖 Model Popularity",
            description="Share of the tokens admitted in the selected range, per model.",
            kind="piechart",
            unit="short",
            targets=(Target("A", self.hits(("model",)), legend="{{model}}", instant=True),),
            grid=Grid(12, 30, 6, 8),
        )

    def revenue_by_tier(self) -> Panel:
        return Panel(
            id=16,
            key="revenue_by_tier",
            title=f"💵 Revenue by {self.Dim}",
            description=(
                f"Cost of the admitted tokens per {self.dim} in the selected range, at the "
                "config's prices."
            ),
            kind="bargauge",
            unit="currencyUSD",
            decimals=2,
            targets=(
                Target("A", self.cost((self.dim,)), legend=self.legend(self.dim), instant=True),
            ),
            grid=Grid(18, 30, 6, 8),
            colour_by_tier=True,
        )

    def quota_headroom(self) -> Panel | None:
        targets: list[Target] = []
        tokens = [
            self._quota(t, "tokens", t.token_limit.window_seconds)
            for t in self.config.tiers_by_level()
            if t.token_limit is not None
        ]
        requests = [
            self._quota(t, "requests", t.request_limit.window_seconds)
            for t in self.config.tiers_by_level()
            if t.request_limit is not None and request_namespaces(self.config)
        ]
        for ref_id, policy, parts in (("A", "tokens", tokens), ("B", "requests", requests)):
            if parts:
                targets.append(
                    Target(
                        ref_id,
                        f"sort_desc(topk(10, {' or '.join(parts)}))",
                        legend=f"{{{{user}}}} ({{{{{self.dim}}}}}) {policy}",
                        instant=True,
                        description=f"Share of the {policy} limit used in the current window.",
                    )
                )
        if not targets:
            return None
        return Panel(
            id=17,
            key="quota_headroom",
            title="⛽ Quota Headroom",
            description=(
                "The ten users closest to their token and request limits: hits in the last window "
                f"of their {self.dim}'s limit (window from the config) over the limit's maximum "
                "(the limits-as-data rules' maas:limit_max, else the gateway's maas_limit_max). "
                "100 % means the next request is limited. Limits count all "
                "models, so the model filter does not apply."
            ),
            kind="bargauge",
            unit="percentunit",
            decimals=0,
            min_value=0,
            max_value=1,
            targets=tuple(targets),
            grid=Grid(0, 38, 24, 9),
            thresholds=(Threshold("green"), Threshold("orange", 0.8), Threshold("red", 1.0)),
        )

    def _quota(self, tier: Tier, policy: str, window_seconds: int) -> str:
        namespace = REQUEST_NAMESPACE if policy == "requests" else NOT_REQUEST_NAMESPACE
        dim = self.dim
        this_tier = f"{dim}={string_literal(tier.name)}"
        attribution = tuple(label_filter(x) for x in self.schema.attribution)
        matchers = (NAMESPACE, namespace, this_tier, label_filter(dim), *attribution, USER_FILTER)
        used = preferred(
            self.schema.names_of(HITS),
            self.schema.labels_of(HITS),
            lambda name: increase_exact(selector(name, matchers), f"{window_seconds}s"),
            (contract.NAMESPACE, USER, dim),
        )
        limit_max = quota([f'policy="{policy}"', this_tier], dim)
        return f"({used} / on (limitador_namespace, {dim}) group_left () ({limit_max} > 0))"

    def details(self) -> Panel:
        schema = self.schema
        keys = detail_labels(schema)
        top = (TABLE_USERS,) if schema.user else ()
        calls_filter = (*self.f.calls, *top)
        tokens_filter = (*self.f.tokens, *top)
        row = "user, " if schema.user else ""
        row += ", ".join(
            [self.dim, *schema.attribution, *(["model"] if schema.calls_model else [])]
        )
        most_active = (
            "Lists the most active users of the selection (hidden variable $table_users); "
            if schema.user
            else ""
        )
        allowed = self.c.total(CALLS, calls_filter, keys)
        limited = self.c.total(LIMITED, calls_filter, keys)
        return Panel(
            id=9,
            key="details",
            title="📋 Detailed Metrics Table",
            description=(
                f"Per {row} and namespace in the selected range: tokens admitted (token "
                "namespaces only), allowed and limited policy checks, success rate and cost. "
                f"{most_active}`maas-metrics report` exports every row."
            ),
            kind="table",
            unit="short",
            targets=(
                Target(
                    "A",
                    self.c.total(HITS, tokens_filter, keys),
                    instant=True,
                    table=True,
                    description="hits",
                ),
                Target("B", allowed, instant=True, table=True, description="allowed calls"),
                Target("C", limited, instant=True, table=True, description="limited calls"),
                Target(
                    "D",
                    success_ratio(allowed, limited, self.c.checks_total(calls_filter, keys)),
                    instant=True,
                    table=True,
                    description="success rate",
                ),
                Target(
                    "E",
                    self.cost(keys, tokens_filter),
                    instant=True,
                    table=True,
                    description="cost",
                ),
            ),
            columns=(
                *((Column("User", label="user"),) if schema.user else ()),
                Column(self.Dim, label=self.dim),
                *(Column(TITLES[a], label=a) for a in schema.attribution),
                *((Column("Model", label="model"),) if schema.calls_model else ()),
                Column("Namespace", label=contract.NAMESPACE),
                Column("Hits", ref_id="A", unit="short", decimals=0),
                Column("Allowed calls", ref_id="B", unit="short", decimals=0),
                Column("Limited calls", ref_id="C", unit="short", decimals=0),
                Column("Success rate", ref_id="D", unit="percentunit", decimals=1),
                Column("Cost", ref_id="E", unit="currencyUSD", decimals=4),
            ),
            grid=Grid(0, 47, 24, 12),
            colour_by_tier=True,
        )
