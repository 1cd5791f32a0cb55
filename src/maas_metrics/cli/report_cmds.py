"""`maas-metrics report`: usage and billing from Prometheus for any time range."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from maas_metrics.cli.common import ConfigOption, fail, load_config_or_exit, write_output
from maas_metrics.cli.extras import require_extra


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
    from maas_metrics.report.timerange import parse_duration

    if format not in FORMATS:
        fail(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if format == "html":
        require_extra("web")
    cfg = load_config_or_exit(config)
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
    if format == "html":
        from maas_metrics.report.html import to_html

        text = to_html(result, cfg)
    else:
        text = {"csv": to_csv, "json": to_json}[format](result)
    write_output(text, output)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
