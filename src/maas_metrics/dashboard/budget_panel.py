"""The "Budget used" panel: each user's month so far over their monthly budget.

Only when the config sets a budget (tier or key): the numbers come from the
gateway's `maas_budget_used` / `maas_budget_limit` gauges (Limitador has no
budgets). `max by` merges the gateway replicas, as the budget alerts do
(rules/budgets.py holds the one expression).
"""

from __future__ import annotations

from maas_metrics.config import Config
from maas_metrics.dashboard.model import Grid, Panel, Target, Threshold
from maas_metrics.dashboard.promql import TIER, USER
from maas_metrics.rules.budgets import LIMIT, USED, has_budgets

PANEL_ID = 40  # clear of the reference panels and of the ids other panels take
KEY = "budget_used"


def budget_used_expr() -> str:
    keep = "user, tier, unit"
    used = f"max by ({keep}) ({USED}{{{TIER}, {USER}}})"
    limit = f"max by ({keep}) ({LIMIT}{{{TIER}, {USER}}})"
    return f"sort_desc(topk(10, {used} / {limit}))"


def budget_panel(config: Config, y: int = 59) -> Panel | None:
    """The panel (below the detailed table by default), or None when no budget is configured."""
    if not has_budgets(config):
        return None
    return Panel(
        id=PANEL_ID,
        key=KEY,
        title="💰 Budget Used",
        description=(
            "The ten users closest to (or over) their monthly budget: this calendar month's "
            "spend in dollars or tokens over the budget, from the gateway's budget counters. "
            "100 % means a hard budget rejects the next request. Budgets count all models."
        ),
        kind="bargauge",
        unit="percentunit",
        decimals=0,
        min_value=0,
        max_value=1,
        targets=(
            Target(
                "A",
                budget_used_expr(),
                legend="{{user}} ({{tier}}, {{unit}})",
                instant=True,
                description="Share of the monthly budget used this month.",
            ),
        ),
        grid=Grid(0, y, 24, 8),
        thresholds=(Threshold("green"), Threshold("orange", 0.8), Threshold("red", 1.0)),
    )
