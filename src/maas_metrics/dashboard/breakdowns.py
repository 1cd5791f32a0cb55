"""Panels that exist only in some schemas: cost per attribution label, top subscriptions.

Today's platform attributes usage to an organisation, a cost centre, a group
or a tenant (`schema.attribution`), and bills subscriptions rather than a
few tiers. Each captured attribution label gets a "cost by" panel; the
`subscription` dimension gets a top-10 panel (with a handful of tiers the
by-tier panels already show every one). They reuse the catalogue's
expressions (`cost`, `hits`) so their numbers add up with every other panel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.dashboard.model import Grid, Panel, Target

FIRST_ID = 18
TOP_Y = 59
"""Below the detailed table (which ends at y = 59)."""

LABEL_TITLES = {
    contract.ORGANIZATION: ("🏢", "Organization"),
    contract.COST_CENTER: ("💼", "Cost Centre"),
    contract.GROUP: ("👪", "Group"),
    contract.TENANT: ("🏬", "Tenant"),
}

Expression = Callable[[tuple[str, ...]], str]


def panels(schema: Schema, cost: Expression, hits: Expression) -> list[Panel]:
    """The extra panels of `schema`, laid out four to a row below the detailed table.

    `cost(labels)` / `hits(labels)`: the catalogue's cost and token totals by `labels`.
    """
    out: list[Panel] = []
    if schema.dimension == contract.SUBSCRIPTION:
        out.append(
            Panel(
                id=0,
                key="top_subscriptions",
                title="🏆 Top 10 Subscriptions by Hits",
                description="The ten subscriptions with the most tokens admitted in the range.",
                kind="bargauge",
                unit="short",
                targets=(
                    Target(
                        "A",
                        f"sort_desc(topk(10, {hits((schema.dimension,))}))",
                        legend="{{" + schema.dimension + "}}",
                        instant=True,
                    ),
                ),
                grid=Grid(0, 0, 6, 8),
                colour_by_tier=True,
            )
        )
    for label in schema.attribution:
        icon, title = LABEL_TITLES[label]
        out.append(
            Panel(
                id=0,
                key=f"cost_by_{label}",
                title=f"{icon} Cost by {title}",
                description=(
                    f"Cost of the admitted tokens per {label} in the selected range, at the "
                    f"config's prices. Keys without a {label} count under "
                    f"`{schema.missing_value}`."
                ),
                kind="bargauge",
                unit="currencyUSD",
                decimals=2,
                targets=(
                    Target(
                        "A",
                        f"sort_desc({cost((label,))})",
                        legend="{{" + label + "}}",
                        instant=True,
                    ),
                ),
                grid=Grid(0, 0, 6, 8),
            )
        )
    return [_placed(panel, FIRST_ID + index, index) for index, panel in enumerate(out)]


def _placed(panel: Panel, panel_id: int, index: int) -> Panel:
    row, column = divmod(index, 4)
    return replace(panel, id=panel_id, grid=Grid(6 * column, TOP_Y + 8 * row, 6, 8))
