"""The catalogue's per-user row: hits by user and tier, top 10 users by hits, top 5 by cost.

Every panel here needs the `user` label: without it (`schema.capture_user:
false`) the catalogue keeps their places and says why they are empty.
"""

from __future__ import annotations

from maas_metrics.dashboard.model import Grid, Panel, Target
from maas_metrics.dashboard.panel_context import USER, PanelContext


def row(ctx: PanelContext) -> list[Panel]:
    """Hits by user & tier, top users, top cost users, left to right at y = 20."""
    return [
        ctx.per_user(hits_by_user_tier),
        ctx.per_user(top_users),
        ctx.per_user(top_cost_users),
    ]


def hits_by_user_tier(ctx: PanelContext) -> Panel:
    return Panel(
        id=3,
        key="hits_by_user_tier",
        title=f"👥 Authorized Hits by User & {ctx.Dim}",
        description=(
            f"Tokens admitted per user in the selected range, coloured by the user's {ctx.dim}: "
            "the top users, the rest summed as others."
        ),
        kind="bargauge",
        unit="short",
        targets=(
            Target(
                "A",
                f"sort_desc({ctx.top_hits((USER, ctx.dim))})",
                legend=ctx.legend(USER, ctx.dim),
                instant=True,
            ),
        ),
        grid=Grid(0, 20, 8, 10),
        colour_by_tier=True,
    )


def top_users(ctx: PanelContext) -> Panel:
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
                f"sort_desc(topk(10, {ctx.hits((USER, ctx.dim))}))",
                legend=ctx.legend(USER, ctx.dim),
                instant=True,
            ),
        ),
        grid=Grid(8, 20, 8, 10),
        colour_by_tier=True,
    )


def top_cost_users(ctx: PanelContext) -> Panel:
    return Panel(
        id=8,
        key="top_cost_users",
        title="💰 Top 5 Users by Cost",
        description=(
            "The five users whose admitted tokens cost most in the selected range, at their "
            f"{ctx.dim}'s price per hit (model-specific prices where configured)."
        ),
        kind="bargauge",
        unit="currencyUSD",
        decimals=2,
        targets=(
            Target(
                "A",
                f"sort_desc(topk(5, {ctx.cost((USER, ctx.dim))}))",
                legend=ctx.legend(USER, ctx.dim),
                instant=True,
            ),
        ),
        grid=Grid(16, 20, 8, 10),
        colour_by_tier=True,
    )
