"""The catalogue's top row: four stats over the selected range (hits, active users, success, cost).

Reference panels 1 and 7 and the README's success-rate and total-cost stats,
each one number over `$__range` (`or_zero` so an idle range shows 0, not
"No data").
"""

from __future__ import annotations

from maas_metrics.dashboard.model import Grid, Panel, Target, Threshold
from maas_metrics.dashboard.panel_context import CALLS, LIMITED, USER, PanelContext
from maas_metrics.dashboard.promql import or_zero, success_ratio


def row(ctx: PanelContext) -> list[Panel]:
    """Total hits, active users, success rate and total cost, left to right at y = 0."""
    return [total_hits(ctx), ctx.per_user(active_users), success_rate(ctx), total_cost(ctx)]


def total_hits(ctx: PanelContext) -> Panel:
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
        targets=(Target("A", or_zero(ctx.hits(())), legend="hits", instant=True),),
        grid=Grid(0, 0, 6, 4),
    )


def active_users(ctx: PanelContext) -> Panel:
    return Panel(
        id=7,
        key="active_users",
        title="👥 Active Users",
        description="Users with at least one allowed or limited call in the selected range.",
        kind="stat",
        unit="short",
        targets=(
            Target("A", or_zero(f"count({ctx.active((USER,))})"), legend="users", instant=True),
        ),
        grid=Grid(6, 0, 6, 4),
    )


def success_rate(ctx: PanelContext) -> Panel:
    allowed = ctx.c.total(CALLS, ctx.f.calls, ())
    limited = ctx.c.total(LIMITED, ctx.f.calls, ())
    checks = ctx.c.checks_total(ctx.f.calls, ())
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


def total_cost(ctx: PanelContext) -> Panel:
    return Panel(
        id=11,
        key="total_cost",
        title="🧾 Total Cost",
        description=(
            f"Authorized hits of the range times each {ctx.dim}'s price per hit from the "
            f"config (every configured {ctx.dim})."
        ),
        kind="stat",
        unit="currencyUSD",
        decimals=2,
        targets=(Target("A", or_zero(ctx.cost(())), legend="cost", instant=True),),
        grid=Grid(18, 0, 6, 4),
    )
