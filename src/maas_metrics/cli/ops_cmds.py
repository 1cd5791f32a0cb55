"""`maas-metrics report`, `maas-metrics rules` and `maas-metrics manifests`: operating the platform."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit, write_output
from maas_metrics.rules.alerts import DEFAULT_LIMITER_JOBS, AlertSettings

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)]

LimitedRatioOption = Annotated[
    float,
    typer.Option(
        "--limited-ratio",
        help="MaaSHighLimitedRatio fires when more than this fraction of a tier's policy checks "
        "are limited for 10 minutes.",
    ),
]
NearQuotaOption = Annotated[
    float,
    typer.Option(
        "--near-quota",
        help="MaaSUserNearQuota fires when a user has used this fraction of a limit within its window.",
    ),
]
LimiterJobOption = Annotated[
    list[str] | None,
    typer.Option(
        "--limiter-job",
        help="`job` label of a rate limiter scrape target, for MaaSRateLimiterDown; repeat for "
        "several (default: limitador-limitador and maas-gateway, the ServiceMonitors' jobs).",
    ),
]


def _alert_settings(
    limited_ratio: float, near_quota: float, jobs: list[str] | None
) -> AlertSettings:
    try:
        return AlertSettings(
            limited_ratio=limited_ratio,
            near_quota=near_quota,
            limiter_jobs=tuple(jobs) if jobs else DEFAULT_LIMITER_JOBS,
        )
    except ValueError as error:
        fail(str(error))


# --- rules -----------------------------------------------------------------------------------


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
    from maas_metrics.manifests import dump
    from maas_metrics.manifests.monitoring import prometheus_rule
    from maas_metrics.rules import render_rule_file, rule_groups

    if format not in ("prometheus", "prometheusrule"):
        fail(f"--format {format!r}: choose prometheus or prometheusrule")
    cfg = load_config_or_exit(config)
    settings = _alert_settings(limited_ratio, near_quota, limiter_job)
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


# --- manifests -------------------------------------------------------------------------------


def manifests(
    config: ConfigOption,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Directory to write one YAML file per object into (numbered in apply order); "
            "default: one multi-document YAML stream on stdout.",
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Namespace of the gateway, its Redis and the PrometheusRule.")
    ] = "maas",
    image: Annotated[
        str | None,
        typer.Option(help="Container image of maas-metrics for the gateway Deployment."),
    ] = None,
    replicas: Annotated[
        int, typer.Option(help="Gateway replicas (they share counters in Redis).")
    ] = 2,
    gateway_name: Annotated[
        str, typer.Option(help="The Gateway API Gateway the Kuadrant policies target.")
    ] = "maas-default-gateway",
    gateway_namespace: Annotated[
        str, typer.Option(help="Namespace of that Gateway (policies live next to it).")
    ] = "openshift-ingress",
    kuadrant_namespace: Annotated[
        str, typer.Option(help="Namespace of Limitador (its Service limitador-limitador).")
    ] = "kuadrant-system",
    part: Annotated[
        list[str] | None,
        typer.Option(
            "--part",
            help="Only these parts (repeatable): monitoring (ServiceMonitors, PrometheusRule), "
            "kuadrant (TelemetryPolicy, RateLimitPolicy, TokenRateLimitPolicy), gateway "
            "(ConfigMap, Deployment, Service, Redis). Default: all.",
        ),
    ] = None,
    limited_ratio: LimitedRatioOption = 0.2,
    near_quota: NearQuotaOption = 0.9,
    limiter_job: LimiterJobOption = None,
) -> None:
    """Kubernetes manifests generated from the config.

    Monitoring: a ServiceMonitor for Limitador (Service limitador-limitador,
    port http, /metrics) and one for the gateway, and a PrometheusRule with
    the rules of `maas-metrics rules`. Kuadrant: a TelemetryPolicy adding the
    user, tier and model labels to Limitador's metrics, and a RateLimitPolicy
    and a TokenRateLimitPolicy with each tier's limits and windows, counted
    per user. Gateway (for teams not on Kuadrant): the config as a ConfigMap,
    the gateway Deployment and Service, and a Redis the replicas share.
    Apply with `kubectl apply -f -` (stdout) or `kubectl apply -f DIR`.
    """
    from maas_metrics.manifests import (
        PARTS,
        ManifestOptions,
        build_manifests,
        render_yaml,
        write_directory,
    )

    cfg = load_config_or_exit(config)
    settings = _alert_settings(limited_ratio, near_quota, limiter_job)
    parts = tuple(part) if part else PARTS
    for p in parts:
        if p not in PARTS:
            fail(f"--part {p!r}: choose from {', '.join(PARTS)}")
    try:
        options = ManifestOptions(
            namespace=namespace,
            replicas=replicas,
            gateway_name=gateway_name,
            gateway_namespace=gateway_namespace,
            kuadrant_namespace=kuadrant_namespace,
            parts=parts,  # type: ignore[arg-type]
            alerts=settings,
            **({"image": image} if image else {}),
        )
    except ValueError as error:
        fail(str(error))
    objects = build_manifests(cfg, options)
    if output is None:
        sys.stdout.write(render_yaml(objects))
        return
    try:
        paths = write_directory(objects, output)
    except OSError as error:
        fail(f"cannot write to {output}: {error.strerror}")
    print(f"wrote {len(paths)} manifests to {output}", file=sys.stderr)


# --- report ----------------------------------------------------------------------------------


def _filter(what: str) -> typer.models.OptionInfo:
    option: typer.models.OptionInfo = typer.Option(
        help=f"Only this {what} (repeatable; matched literally, never as a regex)."
    )
    return option


def report(
    config: ConfigOption,
    prometheus: Annotated[
        str, typer.Option("--prometheus", "-p", help="Base URL of the Prometheus to read.")
    ] = "http://127.0.0.1:9090",
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start (exclusive), UTC: 2026-11-01, 2026-11-01T12:00, 2026-11-01T12:00+02:00, "
            "or relative: now-24h, now-7d (units s, m, h, d, w).",
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End (inclusive), same forms as --from; default now.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="A calendar month (2026-11) or day (2026-11-05) in UTC, instead of --from/--to."
        ),
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            help="Group rows by these keys, comma-separated: user, tier, model, namespace."
        ),
    ] = "user,tier,model",
    user: Annotated[list[str] | None, _filter("user")] = None,
    tier: Annotated[list[str] | None, _filter("tier")] = None,
    model: Annotated[list[str] | None, _filter("model")] = None,
    namespace: Annotated[list[str] | None, _filter("limitador_namespace")] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="table (terminal), csv (no total row), json (rows and total), or html (a "
            "self-contained page with charts: cost by tier, top users).",
        ),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    step: Annotated[
        str | None,
        typer.Option(
            help="Longest time window per query (e.g. 6h, 1d). Default: a day, halved "
            "automatically while Prometheus refuses a window as too large.",
        ),
    ] = None,
    resolution: Annotated[
        str,
        typer.Option(
            help="Read the counters every this often; keep it at most your scrape interval so "
            "every counter reset is seen. Range edges snap down to this grid.",
        ),
    ] = "15s",
    source: Annotated[
        str,
        typer.Option(
            help="auto: the ledger when ledger.url is configured (exact; --by also takes day, "
            "month), else Prometheus; or ledger / prometheus.",
        ),
    ] = "auto",
) -> None:
    """Usage and billing report from Prometheus, for any time range.

    Per group: tokens (authorized hits of the token policy; request-policy
    hits are requests and never count), allowed and limited calls (policy
    checks), success rate = allowed / (allowed + limited), and cost from the
    config's prices (per hit, or per prompt/completion token where a price
    change says so). Totals are exact increases over (from, to], across
    counter resets; long ranges are read in windows that add up exactly,
    with a progress bar. A price change applies from 00:00 UTC of its
    effective date on, so it never rewrites past bills.

    Example: maas-metrics report -c maas.yaml -p http://prometheus:9090
    --period 2026-11 --by user,tier --format csv -o november.csv
    """
    from maas_metrics.prometheus import PrometheusAPI, PrometheusError
    from maas_metrics.report import (
        ReportInputError,
        ReportRequest,
        TimeInputError,
        build_report,
        parse_group_by,
        resolve_range,
    )
    from maas_metrics.report.formats import FORMATS, to_csv, to_json, to_table
    from maas_metrics.report.html import to_html
    from maas_metrics.report.timerange import parse_duration

    if format not in FORMATS:
        fail(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if source not in ("auto", "ledger", "prometheus"):
        fail(f"--source {source!r}: choose auto, ledger or prometheus")
    cfg = load_config_or_exit(config)
    if source == "ledger" or (source == "auto" and cfg.ledger.url is not None):
        from maas_metrics.cli.ledger_cmds import ledger_report

        wanted = (("user", user), ("tier", tier), ("model", model), ("namespace", namespace))
        ledger_report(
            cfg,
            start=start,
            end=end,
            period=period,
            by=by,
            filters={key: tuple(values) for key, values in wanted if values},
            format=format,
            output=output,
        )
        return
    try:
        res = parse_duration(resolution, "--resolution")
        step_seconds = parse_duration(step, "--step") if step is not None else None
        rng = resolve_range(start=start, end=end, period=period, resolution=res)
        filters = {
            key: tuple(values)
            for key, values in (
                ("user", user),
                ("tier", tier),
                ("model", model),
                ("namespace", namespace),
            )
            if values
        }
        request = ReportRequest(
            range=rng,
            by=parse_group_by(by),
            filters=filters,
            resolution=res,
            step=step_seconds,
            with_users=format == "html",
        )
    except (ReportInputError, TimeInputError) as error:
        fail(str(error))

    stderr = Console(stderr=True)
    api = PrometheusAPI(prometheus)
    try:
        with Progress(
            TextColumn("reading Prometheus"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        ) as progress:
            task = progress.add_task("report", total=rng.seconds)
            result = build_report(
                api, cfg, request, done=lambda seconds: progress.advance(task, seconds)
            )
    except PrometheusError as error:
        fail(str(error))
    finally:
        api.close()

    if format == "table":
        if output is None:
            to_table(result, Console())
            return
        with output.open("w", encoding="utf-8") as handle:
            to_table(result, Console(file=handle, width=160))
        print(f"wrote {output}", file=sys.stderr)
        return
    text = (
        {"csv": to_csv, "json": to_json}[format](result)
        if format != "html"
        else to_html(result, cfg)
    )
    write_output(text, output)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("rules")(rules)
    app.command("manifests")(manifests)
