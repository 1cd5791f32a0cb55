"""The catalogue's by-tier row: hits by tier, tier distribution, model popularity, revenue.

"Tier" stands for the schema's billing dimension (`tier` or `subscription`):
titles, legends and colours follow it.
"""

from __future__ import annotations

from maas_metrics.dashboard.model import Grid, Panel, Target
from maas_metrics.dashboard.panel_context import USER, PanelContext


def row(ctx: PanelContext) -> list[Panel]:
    """Hits by tier, tier distribution, model popularity, revenue by tier at y = 30."""
    return [
        hits_by_tier(ctx),
        ctx.per_user(tier_distribution),
        model_popularity(ctx),
        revenue_by_tier(ctx),
    ]


def hits_by_tier(ctx: PanelContext) -> Panel:
    return Panel(
        id=6,
        key="hits_by_tier",
        title=f"📊 Total Authorized Hits by {ctx.Dim}",
        description=(f"Tokens admitted per {ctx.dim} in the selected range (usage by {ctx.dim})."),
        kind="bargauge",
        unit="short",
        targets=(Target("A", ctx.hits((ctx.dim,)), legend=ctx.legend(ctx.dim), instant=True),),
        grid=Grid(0, 30, 6, 8),
        colour_by_tier=True,
    )


def tier_distribution(ctx: PanelContext) -> Panel:
    return Panel(
        id=14,
        key="tier_distribution",
        title=f"🥧 {ctx.Dim} Distribution",
        description="How the active users of the selected range are spread over the tiers.",
        kind="piechart",
        unit="short",
        targets=(
            Target(
                "A",
                f"count by ({ctx.dim}) ({ctx.active((USER, ctx.dim))})",
                legend=ctx.legend(ctx.dim),
                instant=True,
            ),
        ),
        grid=Grid(6, 30, 6, 8),
        colour_by_tier=True,
    )


def model_popularity(ctx: PanelContext) -> Panel:
    return Panel(
        id=15,
        key="model_popularity",
        title="🤖 Model Popularity",
        description="Share of the tokens admitted in the selected range, per model.",
        kind="piechart",
        unit="short",
        targets=(Target("A", ctx.hits(("model",)), legend="{{model}}", instant=True),),
        grid=Grid(12, 30, 6, 8),
    )


def revenue_by_tier(ctx: PanelContext) -> Panel:
    return Panel(
        id=16,
        key="revenue_by_tier",
        title=f"💵 Revenue by {ctx.Dim}",
        description=(
            f"Cost of the admitted tokens per {ctx.dim} in the selected range, at the "
            "config's prices."
        ),
        kind="bargauge",
        unit="currencyUSD",
        decimals=2,
        targets=(Target("A", ctx.cost((ctx.dim,)), legend=ctx.legend(ctx.dim), instant=True),),
        grid=Grid(18, 30, 6, 8),
        colour_by_tier=True,
    )
