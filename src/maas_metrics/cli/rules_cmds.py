"""`maas-metrics rules`: Prometheus recording and alerting rules generated from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maas_metrics.cli.alert_options import (
    LimitedRatioOption,
    LimiterJobOption,
    NearQuotaOption,
    alert_settings,
)
from maas_metrics.cli.common import ConfigOption, fail, load_config_or_exit, write_output


def rules(
    config: ConfigOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="prometheus: a rule file for `rule_files:`; prometheusrule: a Prometheus "
            "Operator PrometheusRule object.",
        ),
    ] = "prometheus",
    namespace: Annotated[
        str, typer.Option(help="Namespace of the PrometheusRule (--format prometheusrule).")
    ] = "maas",
    limited_ratio: LimitedRatioOption = 0.2,
    near_quota: NearQuotaOption = 0.9,
    limiter_job: LimiterJobOption = None,
) -> None:
    """Prometheus recording and alerting rules for the config's tiers.

    Recording rules pre-aggregate the counters per user, tier and model (and
    per tier) every minute, so dashboards (`dashboard --recording-rules`) and
    reports stay fast with 10,000+ users. Alerts: MaaSRateLimiterDown
    (limitador_up == 0, its scrape target down, or no limiter at all),
    MaaSHighLimitedRatio (per tier and policy), MaaSUserNearQuota (per
    configured limit, over the limit's window, against the published
    maas_limit_max) and MaaSCounterStorePartitioned (datastore_partitioned == 1
    for 2 minutes). Check the output with `promtool check rules FILE`.
    """
    from maas_metrics.manifests.monitoring import prometheus_rule
    from maas_metrics.rules import render_rule_file, rule_groups
    from maas_metrics.yamlio import dump

    if format not in ("prometheus", "prometheusrule"):
        fail(f"--format {format!r}: choose prometheus or prometheusrule")
    cfg = load_config_or_exit(config)
    settings = alert_settings(limited_ratio, near_quota, limiter_job)
    groups = rule_groups(cfg, settings)
    if format == "prometheus":
        text = render_rule_file(groups)
    else:
        try:
            from maas_metrics.manifests import ManifestOptions

            ManifestOptions(namespace=namespace)
        except ValueError as error:
            fail(str(error))
        text = dump(prometheus_rule(namespace, groups))
    write_output(text, output)


def register(app: typer.Typer) -> None:
    app.command("rules")(rules)
