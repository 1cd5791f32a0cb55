"""Prometheus rules from the config: recording rules that pre-aggregate, alerts for SREs."""

from maas_metrics.rules.alerts import AlertSettings, alert_group, alert_rules
from maas_metrics.rules.render import render_rule_file, rule_groups

__all__ = ["AlertSettings", "alert_group", "alert_rules", "render_rule_file", "rule_groups"]
