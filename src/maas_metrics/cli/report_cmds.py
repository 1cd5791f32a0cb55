"""`maas-metrics report`: usage and billing from Prometheus for any time range."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from maas_metrics.cli.common import ConfigOption, fail, load_config_or_exit, write_output
from maas_metrics.cli.extras import require_extra

if TYPE_CHECKING:
    from maas_metrics.config import Config
    from maas_metrics.report import ReportRequest
    from maas_metrics.report.model import Report


def _filter(what: str) -> typer.models.OptionInfo:
    option: typer.models.OptionInfo = typer.Option(
        help=f"Only this {what} (repeatable; matched literally, never as a regex)."
    )
    return option


PrometheusOption = Annotated[
    str, typer.Option("--prometheus", "-p", help="Base URL of the Prometheus to read.")
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Start (exclusive), UTC: 2026-11-01, 2026-11-01T12:00, 2026-11-01T12:00+02:00, "
        "or relative: now-24h, now-7d (units s, m, h, d, w).",
    ),
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="End (inclusive), same forms as --from; default now.")
]
PeriodOption = Annotated[
    str | None,
    typer.Option(
        help="A calendar month (2026-11) or day (2026-11-05) in UTC, instead of --from/--to."
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option(
        help="Group rows by these keys, comma-separated: user, tier (or subscription), model, "
        "namespace and the schema's attribution labels (organization_id, cost_center, ...). "
        "Default: user, the billing dimension, model (no user when it is not captured)."
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="table (terminal), csv (no total row), json (rows and total), or html (a "
        "self-contained page with charts: cost by tier, top users).",
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
]
StepOption = Annotated[
    str | None,
    typer.Option(
        help="Longest time window per query (e.g. 6h, 1d). Default: a day, halved "
        "automatically while Prometheus refuses a window as too large.",
    ),
]
ResolutionOption = Annotated[
    str | None,
    typer.Option(
        help="Read the counters every this often; keep it at most your scrape interval so "
        "every counter reset is seen. Range edges snap down to this grid. "
        "Default: 15s, or 1m with --recording-rules.",
    ),
]


def report(
    config: ConfigOption,
    prometheus: PrometheusOption = "http://127.0.0.1:9090",
    start: FromOption = None,
    end: ToOption = None,
    period: PeriodOption = None,
    by: ByOption = None,
    user: Annotated[list[str] | None, _filter("user")] = None,
    tier: Annotated[list[str] | None, _filter("tier")] = None,
    subscription: Annotated[list[str] | None, _filter("subscription")] = None,
    model: Annotated[list[str] | None, _filter("model")] = None,
    namespace: Annotated[list[str] | None, _filter("limitador_namespace")] = None,
    organization_id: Annotated[list[str] | None, _filter("organization_id")] = None,
    cost_center: Annotated[list[str] | None, _filter("cost_center")] = None,
    group: Annotated[list[str] | None, _filter("group")] = None,
    tenant_name: Annotated[list[str] | None, _filter("tenant_name")] = None,
    format: FormatOption = "table",
    output: OutputOption = None,
    step: StepOption = None,
    resolution: ResolutionOption = None,
    source: Annotated[
        str,
        typer.Option(
            help="auto: the ledger when ledger.url is configured (exact integers; --by also "
            "takes day and month), else Prometheus; or ledger / prometheus.",
        ),
    ] = "auto",
    recording_rules: Annotated[
        bool,
        typer.Option(
            "--recording-rules",
            help="Read Prometheus's per-user recording rules (maas-metrics rules) instead of the "
            "raw counters: one sample a minute per user, much faster over long ranges. Needs "
            "--resolution in whole minutes (1m when not given).",
        ),
    ] = False,
) -> None:
    """Usage and billing report from the ledger or Prometheus, for any time range.

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
    from maas_metrics.report.formats import FORMATS

    if format not in FORMATS:
        fail(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if format == "html":
        require_extra("web")
    if source not in ("auto", "ledger", "prometheus"):
        fail(f"--source {source!r}: choose auto, ledger or prometheus")
    cfg = load_config_or_exit(config)
    filters = {
        key: tuple(values)
        for key, values in (
            ("user", user),
            ("tier", tier),
            ("subscription", subscription),
            ("model", model),
            ("namespace", namespace),
            ("organization_id", organization_id),
            ("cost_center", cost_center),
            ("group", group),
            ("tenant_name", tenant_name),
        )
        if values
    }
    if source == "ledger" or (source == "auto" and cfg.ledger.enabled):
        from maas_metrics.cli.ledger_cmds import ledger_report

        # The ledger keeps its own keys (user, tier, model, namespace, day, month).
        ledger_by = by if by is not None else "user,tier,model"
        _write(ledger_report(cfg, start, end, period, ledger_by, filters), cfg, format, output)
        return
    if resolution is None:
        resolution = "1m" if recording_rules else "15s"
    request = _request(
        cfg, start, end, period, by, filters, step, resolution, format == "html", recording_rules
    )
    result = _read(prometheus, cfg, request)
    _write(result, cfg, format, output)


def _request(
    cfg: Config,
    start: str | None,
    end: str | None,
    period: str | None,
    by: str | None,
    filters: dict[str, tuple[str, ...]],
    step: str | None,
    resolution: str,
    with_users: bool,
    recording_rules: bool = False,
) -> ReportRequest:
    """The options as a report request, or one line naming the bad option."""
    from maas_metrics.report import (
        ReportInputError,
        ReportRequest,
        TimeInputError,
        parse_group_by,
        resolve_range,
    )
    from maas_metrics.report.model import default_by
    from maas_metrics.report.timerange import parse_duration

    try:
        res = parse_duration(resolution, "--resolution")
        step_seconds = parse_duration(step, "--step") if step is not None else None
        rng = resolve_range(start=start, end=end, period=period, resolution=res)
        schema = cfg.contract
        return ReportRequest(
            range=rng,
            by=default_by(schema) if by is None else parse_group_by(by, schema),
            filters=filters,
            resolution=res,
            step=step_seconds,
            with_users=with_users,
            recording_rules=recording_rules,
            schema=schema,
        )
    except (ReportInputError, TimeInputError) as error:
        fail(str(error))


def _read(prometheus: str, cfg: Config, request: ReportRequest) -> Report:
    """The report from Prometheus, with a progress bar on stderr over the range's seconds."""
    from maas_metrics.prometheus import PrometheusAPI, PrometheusError
    from maas_metrics.report import build_report

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
            task = progress.add_task("report", total=request.range.seconds)
            return build_report(
                api, cfg, request, done=lambda seconds: progress.advance(task, seconds)
            )
    except PrometheusError as error:
        fail(str(error))
    finally:
        api.close()


def _write(result: Report, cfg: Config, format: str, output: Path | None) -> None:
    from maas_metrics.report.formats import to_csv, to_json, to_table

    if format == "table":
        if output is None:
            to_table(result, Console())
            return
        with output.open("w", encoding="utf-8") as handle:
            to_table(result, Console(file=handle, width=160))
        print(f"wrote {output}", file=sys.stderr)
        return
    if format == "html":
        from maas_metrics.report.html import to_html

        text = to_html(result, cfg)
    else:
        text = {"csv": to_csv, "json": to_json}[format](result)
    write_output(text, output)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
