"""`maas-metrics dashboard`: the Grafana dashboard generated from the config."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit, write_output
from maas_metrics.cli.extras import require_extra


class OutputFormat(StrEnum):
    json = "json"
    configmap = "configmap"
    grafana_operator = "grafana-operator"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        help="json: Grafana JSON for Dashboards > Import (asks for the Prometheus datasource); "
        "configmap: a ConfigMap for Grafana's dashboard sidecar; grafana-operator: a "
        "GrafanaDashboard resource.",
    ),
]


def _price_date(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--price-date {text!r} is not a date in YYYY-MM-DD form")


def dashboard(
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")
    ] = None,
    output_format: FormatOption = OutputFormat.json,
    recording_rules: Annotated[
        bool,
        typer.Option(
            "--recording-rules",
            help="Panels read the pre-aggregated series of `maas-metrics rules` (fast with "
            "10,000+ users; one-minute resolution at the range edges).",
        ),
    ] = False,
    price_date: Annotated[
        str | None,
        typer.Option(
            help="Cost panels use the prices in force on this day (YYYY-MM-DD). Default: today."
        ),
    ] = None,
    k8s_namespace: Annotated[
        str, typer.Option(help="metadata.namespace of the Kubernetes outputs.")
    ] = "monitoring",
    datasource_name: Annotated[
        str,
        typer.Option(help="grafana-operator: the Grafana datasource that DS_PROMETHEUS maps to."),
    ] = "Prometheus",
    ledger_panels: Annotated[
        bool | None,
        typer.Option(
            "--ledger-panels/--no-ledger-panels",
            help="json: add billing panels that read the ledger through Grafana's PostgreSQL "
            "data source (input DS_LEDGER). Default: on when ledger.url is PostgreSQL.",
        ),
    ] = None,
) -> None:
    """Generate the MaaS Token Metrics Grafana dashboard from CONFIG.

    Every tier, price, colour and limit comes from the config, so a tier added
    there gets its panels, colours and costs with no code change. The output is
    deterministic: the same config (and --price-date) gives byte-identical files.
    """
    require_extra("grafana")
    from maas_metrics.dashboard.catalogue import build_catalogue
    from maas_metrics.dashboard.grafana import render_json
    from maas_metrics.dashboard.kubernetes import render_configmap, render_grafana_dashboard

    cfg = load_config_or_exit(config)
    catalogue = build_catalogue(
        cfg, recording_rules=recording_rules, price_date=_price_date(price_date)
    )
    if ledger_panels is None:
        ledger_panels = output_format is OutputFormat.json and (cfg.ledger.url or "").startswith(
            "postgres"
        )
    if ledger_panels and output_format is not OutputFormat.json:
        fail("--ledger-panels: only with --format json (Grafana's Import maps DS_LEDGER)")
    match output_format:
        case OutputFormat.json if ledger_panels:
            from maas_metrics.dashboard.grafana import dashboard as dashboard_doc
            from maas_metrics.dashboard.ledger_panels import render_with_ledger

            text = render_with_ledger(dashboard_doc(catalogue), cfg)
        case OutputFormat.json:
            text = render_json(catalogue)
        case OutputFormat.configmap:
            text = render_configmap(catalogue, namespace=k8s_namespace)
        case OutputFormat.grafana_operator:
            text = render_grafana_dashboard(
                catalogue, namespace=k8s_namespace, datasource_name=datasource_name
            )
    write_output(text, output, f"{len(catalogue.panels)} panels, {output_format.value}")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
