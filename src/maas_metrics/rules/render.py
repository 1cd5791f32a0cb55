"""One set of rule groups (recording + alerting) for a Prometheus rule file or a PrometheusRule."""

from __future__ import annotations

from typing import Any

from maas_metrics.config import Config
from maas_metrics.rules.alerts import AlertSettings, alert_group
from maas_metrics.yamlio import dump


def recording_groups(config: Config) -> list[dict[str, Any]]:
    """The recording rules the dashboard's `--recording-rules` queries read (rules/recording.py)."""
    from maas_metrics.rules import recording

    return recording.recording_groups(config)


def rule_groups(
    config: Config, settings: AlertSettings | None = None, *, recording: bool = True
) -> list[dict[str, Any]]:
    from maas_metrics.rules.budgets import budget_groups
    from maas_metrics.rules.limits import limits_group

    groups = recording_groups(config) if recording else []
    # The limits-as-data group (rules/limits.py) is always there: the near-quota alert reads it.
    return [
        *groups,
        alert_group(config, settings),
        limits_group(config),
        *budget_groups(config),  # only when a budget is configured (rules/budgets.py)
    ]


def render_rule_file(groups: list[dict[str, Any]]) -> str:
    """A Prometheus rule file (`rule_files:`), checked by `promtool check rules`."""
    return dump({"groups": groups})
