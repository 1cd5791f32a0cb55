"""The catalogue's time-series rows: hits rate, allowed vs limited calls, success rate, hourly hits.

The three per-tier rate panels cap their points (`RATE_PANEL_POINTS`) so a
large platform's raw queries stay within Prometheus's sample limit; the
hourly bars step by one hour whatever the range.
"""

from __future__ import annotations

from maas_metrics.dashboard.hourly import hourly_top_and_others
from maas_metrics.dashboard.model import Grid, Panel, Target
from maas_metrics.dashboard.panel_context import (
    CALLS,
    HITS,
    LIMITED,
    TOP_USERS,
    PanelContext,
)
from maas_metrics.dashboard.promql import success_ratio

#: Max data points of the per-tier rate panels. Their raw queries compute each
#: series' exact growth at every step before summing by tier, so Prometheus
#: holds about 4 x series x steps samples: 50 points keep 10,000 users x 5
#: models (210,000 series) at 30 s scrapes within 40-60 % of its default
#: 50,000,000-sample limit for any range (1 h: 1 min steps; 24 h: 30 min;
#: 7 days: 3 h), where Grafana's default (the panel's width, ~1,000 points) is
#: refused. Measured: tests/test_scale_sample_limit.py, benchmarks/bench_scale.py.
RATE_PANEL_POINTS = 50


def rows(ctx: PanelContext) -> list[Panel]:
    """Hits rate and calls (y = 4), then success rate and hourly hits by user (y = 12)."""
    return [
        hits_rate_by_tier(ctx),
        calls_by_tier(ctx),
        success_rate_by_tier(ctx),
        ctx.per_user(hourly_hits_by_user),
    ]


def hits_rate_by_tier(ctx: PanelContext) -> Panel:
    return Panel(
        id=2,
        key="hits_rate_by_tier",
        title=f"📈 Authorized Hits Rate by {ctx.Dim}",
        description=f"Tokens admitted per second, per {ctx.dim} (token namespaces only).",
        kind="timeseries",
        unit="short",
        targets=(
            Target("A", ctx.c.rate(HITS, ctx.f.tokens, (ctx.dim,)), legend=ctx.legend(ctx.dim)),
        ),
        grid=Grid(0, 4, 12, 8),
        colour_by_tier=True,
        max_data_points=RATE_PANEL_POINTS,
    )


def calls_by_tier(ctx: PanelContext) -> Panel:
    return Panel(
        id=12,
        key="calls_by_tier",
        title=f"🚦 Allowed vs Limited Calls by {ctx.Dim}",
        description=(
            "Policy checks per second that were allowed (solid) or rate-limited with HTTP 429 "
            f"(dashed), per {ctx.dim}, for both the request and the token policy."
        ),
        kind="timeseries",
        unit="reqps",
        targets=(
            Target(
                "A",
                ctx.c.rate(CALLS, ctx.f.calls, (ctx.dim,)),
                legend="allowed · " + ctx.legend(ctx.dim),
            ),
            Target(
                "B",
                ctx.c.rate(LIMITED, ctx.f.calls, (ctx.dim,)),
                legend="limited · " + ctx.legend(ctx.dim),
                dashed=True,
            ),
        ),
        grid=Grid(12, 4, 12, 8),
        colour_by_tier=True,
        max_data_points=RATE_PANEL_POINTS,
    )


def success_rate_by_tier(ctx: PanelContext) -> Panel:
    allowed = ctx.c.rate(CALLS, ctx.f.calls, (ctx.dim,))
    limited = ctx.c.rate(LIMITED, ctx.f.calls, (ctx.dim,))
    checks = ctx.c.checks_rate(ctx.f.calls, (ctx.dim,))
    return Panel(
        id=13,
        key="success_rate_by_tier",
        title=f"✅ Success Rate by {ctx.Dim}",
        description=(
            f"authorized_calls / (authorized_calls + limited_calls) per {ctx.dim} over time; a "
            f"{ctx.dim} "
            "whose users are only limited shows 0 %."
        ),
        kind="timeseries",
        unit="percentunit",
        decimals=1,
        min_value=0,
        max_value=1,
        targets=(Target("A", success_ratio(allowed, limited, checks), legend=ctx.legend(ctx.dim)),),
        grid=Grid(0, 12, 12, 8),
        colour_by_tier=True,
        max_data_points=RATE_PANEL_POINTS,
    )


def hourly_hits_by_user(ctx: PanelContext) -> Panel:
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
                hourly_top_and_others(ctx.c, HITS, ctx.f.tokens, TOP_USERS),
                legend="{{user}}",
                min_step="1h",
            ),
        ),
        grid=Grid(12, 12, 12, 8),
    )
