"""Alerts on monthly budgets: a user's month at 50 %, 80 % and 100 % of its budget.

The gateway publishes `maas_budget_used` and `maas_budget_limit` (labels
user, tier, unit) from the limiter's budget counters. The three alerts are
bands, so a user is in at most one at a time and each step notifies once:
50-80 % (info), 80-100 % (warning), at or over 100 % (critical). `max by`
merges the gateway replicas (each shows the shared counter as it last read
it; the latest read is the largest within a month). The group exists only
when the config sets a budget: Limitador has no budgets, so on Kuadrant
alone there is nothing to watch.
"""

from __future__ import annotations

from typing import Any, Final

from maas_metrics.config import Config

GROUP_NAME: Final = "maas-metrics-budgets"
USED: Final = "maas_budget_used"
LIMIT: Final = "maas_budget_limit"

#: (alert, lower bound, upper bound or None, severity, what it says)
BANDS: Final = (
    ("MaaSBudgetHalfUsed", 0.5, 0.8, "info", "has used half"),
    ("MaaSBudgetMostlyUsed", 0.8, 1.0, "warning", "has used 80 %"),
    ("MaaSBudgetExhausted", 1.0, None, "critical", "has used all"),
)

Rule = dict[str, object]


def fraction_used() -> str:
    """Per user, tier and unit: the month's use over the budget."""
    keep = "user, tier, unit"
    return f"(max by ({keep}) ({USED}) / max by ({keep}) ({LIMIT}))"


def budget_alerts() -> list[Rule]:
    rules: list[Rule] = []
    for alert, low, high, severity, says in BANDS:
        expr = f"{fraction_used()} >= {low:g}"
        if high is not None:
            expr = f"{expr} < {high:g}"
        rules.append(
            {
                "alert": alert,
                "expr": expr,
                "labels": {"severity": severity},
                "annotations": {
                    "summary": f"A user {says} of this month's budget",
                    "description": (
                        f"User {{{{ $labels.user }}}} (tier {{{{ $labels.tier }}}}) {says} of "
                        "the monthly budget ({{ $value | humanizePercentage }} used, unit "
                        "{{ $labels.unit }})."
                    ),
                },
            }
        )
    return rules


def has_budgets(config: Config) -> bool:
    return any(t.budget is not None for t in config.tiers) or any(
        k.budget is not None for k in config.api_keys
    )


def budget_groups(config: Config) -> list[dict[str, Any]]:
    """The budget alert group, or none when no tier or key has a budget."""
    if not has_budgets(config):
        return []
    return [{"name": GROUP_NAME, "rules": budget_alerts()}]
