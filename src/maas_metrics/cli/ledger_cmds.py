"""`maas-metrics ledger ...` and `maas-metrics reconcile`: the durable usage ledger from the command line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from maas_metrics.cli.common import ConfigOption, fail, load_config_or_exit, write_output
from maas_metrics.cli.extras import require_extra
from maas_metrics.config import Config

if TYPE_CHECKING:
    from maas_metrics.ledger import LedgerStore
    from maas_metrics.ledger.limiter_check import LimiterCheck
    from maas_metrics.ledger.reconcile import Reconciliation
    from maas_metrics.report import TimeRange
    from maas_metrics.report.model import Report

FromOption = Annotated[
    str | None,
    typer.Option("--from", help="Start (exclusive), UTC: 2026-11-01, 2026-11-01T12:00, now-24h."),
]
ToOption = Annotated[str | None, typer.Option("--to", help="End (inclusive); default now.")]
PeriodOption = Annotated[
    str | None, typer.Option(help="A calendar month (2026-11) or day (2026-11-05) in UTC.")
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
]

ledger_app = typer.Typer(
    help="The durable usage ledger: check, export, prune.", no_args_is_help=True
)


def _store(cfg: Config) -> LedgerStore:
    """The configured ledger store, opened (exit 2 with one line when it cannot be used)."""
    from maas_metrics.ledger import LedgerError, LedgerStore
    from maas_metrics.ledger.store import configured_url

    try:
        url = configured_url(cfg.ledger)
        if url.startswith("postgres"):
            require_extra("postgres")
        store = LedgerStore(url)
        store.open()
    except LedgerError as error:
        fail(str(error), code=2)
    return store


def _range(start: str | None, end: str | None, period: str | None) -> TimeRange:
    from maas_metrics.report import TimeInputError, resolve_range

    try:
        return resolve_range(start=start, end=end, period=period, resolution=1.0)
    except TimeInputError as error:
        fail(str(error))


@ledger_app.command("check")
def check(config: ConfigOption) -> None:
    """Connect to the ledger database, create or upgrade its schema, and say how many records it holds."""
    from maas_metrics.ledger.store import safe_url

    cfg = load_config_or_exit(config)
    store = _store(cfg)
    print(f"ledger {safe_url(store.url)}: ok, {store.count()} records")
    store.close()


@ledger_app.command("prune")
def prune(
    config: ConfigOption,
    days: Annotated[
        int | None,
        typer.Option(help="Keep this many days (default: ledger.retention_days).", min=1),
    ] = None,
) -> None:
    """Delete records (and their roll-ups) older than the retention, on whole UTC days."""
    cfg = load_config_or_exit(config)
    keep = days if days is not None else cfg.ledger.retention_days
    if keep is None:
        fail("give --days or set ledger.retention_days in the config")
    store = _store(cfg)
    cut_ms = round((time.time() - keep * 86400) * 1000)
    records, hours = store.prune(cut_ms)
    store.close()
    print(f"pruned {records} records and {hours} roll-up rows older than {keep} days")


@ledger_app.command("rebuild-rollups")
def rebuild_rollups(config: ConfigOption) -> None:
    """Recompute the hourly, 6-hour and daily roll-ups from the records (after an import by SQL, or as a repair)."""
    from maas_metrics.ledger.rollups import rebuild

    cfg = load_config_or_exit(config)
    store = _store(cfg)
    rows = rebuild(store.engine)
    store.close()
    print(f"rebuilt {rows} roll-up rows (hourly, 6-hour and daily)")


@ledger_app.command("export")
def export(
    config: ConfigOption,
    start: FromOption = None,
    end: ToOption = None,
    period: PeriodOption = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="csv or jsonl: one line per request (with its cost); focus: FOCUS 1.2 "
            "cost-and-usage CSV, one row per day, user, model and SKU (model + token kind).",
        ),
    ] = "csv",
    output: OutputOption = None,
) -> None:
    """Export the ledger for finance tools and audits."""
    from maas_metrics.ledger.export import (
        focus_rows,
        raw_rows,
        to_focus_csv,
        to_jsonl,
        to_raw_csv,
    )

    if format not in ("csv", "jsonl", "focus"):
        fail(f"--format {format!r}: choose csv, jsonl or focus")
    cfg = load_config_or_exit(config)
    rng = _range(start, end, period)
    store = _store(cfg)
    try:
        if format == "focus":
            write_output(to_focus_csv(focus_rows(store.engine, cfg, rng.start, rng.end)), output)
            return
        rows = raw_rows(store.engine, cfg, rng.start, rng.end)
        chunks = to_jsonl(rows) if format == "jsonl" else to_raw_csv(rows)
        _write_chunks(chunks, output)
    finally:
        store.close()


def _write_chunks(chunks: Iterable[str], output: Path | None) -> None:
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    try:
        with output.open("w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    print(f"wrote {output}", file=sys.stderr)


def ledger_report(
    cfg: Config,
    start: str | None,
    end: str | None,
    period: str | None,
    by: str,
    filters: dict[str, tuple[str, ...]],
) -> Report:
    """`maas-metrics report` when the source is the ledger: exact integers, the same formats."""
    from maas_metrics.ledger.report import build_ledger_report, parse_ledger_by
    from maas_metrics.report import ReportInputError

    try:
        keys = parse_ledger_by(by)
    except ReportInputError as error:
        fail(str(error))
    rng = _range(start, end, period)
    store = _store(cfg)
    try:
        return build_ledger_report(
            store.engine, cfg, rng.start, rng.end, keys, filters, rng.clipped
        )
    finally:
        store.close()


def reconcile(
    config: ConfigOption,
    prometheus: Annotated[
        str, typer.Option("--prometheus", "-p", help="Base URL of the Prometheus to read.")
    ] = "http://127.0.0.1:9090",
    start: FromOption = None,
    end: ToOption = None,
    period: PeriodOption = None,
    resolution: Annotated[
        str, typer.Option(help="Read the counters every this often (at most the scrape interval).")
    ] = "15s",
    edge: Annotated[
        str,
        typer.Option(
            help="Requests that ended within this of either range edge (or ran across it) may "
            "fall on either side of it in Prometheus: their counts are the tolerance. Use about "
            "twice the scrape interval.",
        ),
    ] = "30s",
    limiter: Annotated[
        bool,
        typer.Option(
            help="Also compare each live limiter counter in Redis (storage.url) with the "
            "ledger's sum since its window start (skipped for in-memory counters).",
        ),
    ] = True,
) -> None:
    """Prove the ledger and the metrics agree: per user, model and namespace, tokens and calls.

    Exit status 0 when every difference is within the edge tolerance, 1 when
    any is not (each with its likely cause), 2 when the ledger cannot be read.
    The verdict is recorded in the ledger database (the web dashboard shows
    the last one).
    """
    from maas_metrics.ledger.reconcile import reconcile as run_reconcile
    from maas_metrics.prometheus import PrometheusAPI, PrometheusError
    from maas_metrics.report import TimeInputError, resolve_range
    from maas_metrics.report.timerange import parse_duration

    cfg = load_config_or_exit(config)
    try:
        res = parse_duration(resolution, "--resolution")
        edge_seconds = parse_duration(edge, "--edge")
        rng = resolve_range(start=start, end=end, period=period, resolution=res)
    except TimeInputError as error:
        fail(str(error))
    store = _store(cfg)
    api = PrometheusAPI(prometheus)
    live: LimiterCheck | None = None
    try:
        result = run_reconcile(store.engine, api, cfg, rng, res, edge_seconds)
        if limiter and cfg.storage.url != "memory":
            live = _limiter_check(store, cfg, edge_seconds)
        _save(store, result, live)
    except PrometheusError as error:
        fail(str(error))
    finally:
        api.close()
        store.close()
    console = Console()
    table = Table(title=f"Ledger vs Prometheus, {rng.start.isoformat()} to {rng.end.isoformat()}")
    for column in ("", "tokens", "allowed", "limited"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "ledger", *(f"{result.ledger_totals[f]:,}" for f in ("tokens", "allowed", "limited"))
    )
    table.add_row(
        "prometheus",
        *(f"{result.prometheus_totals[f]:,}" for f in ("tokens", "allowed", "limited")),
    )
    console.print(table)
    if result.differences:
        diffs = Table(title="Differences (ledger - prometheus)")
        for column in (
            "user",
            "model",
            "namespace",
            "field",
            "ledger",
            "prometheus",
            "diff",
            "tolerance",
            "likely cause",
        ):
            diffs.add_column(column, overflow="fold")
        for d in result.differences:
            diffs.add_row(
                *d.key,
                d.field,
                str(d.ledger),
                str(d.prometheus),
                f"{d.diff:+}",
                str(d.slack),
                d.cause,
            )
        console.print(diffs)
    if live is not None:
        _print_limiter(live, console)
    ok = result.ok and (live is None or live.ok)
    verdict = "agree" if ok else "DISAGREE"
    print(
        f"reconcile: {result.rows} rows, {len(result.differences)} differences, "
        f"{sum(not d.within for d in result.differences)} beyond tolerance"
        + (
            ""
            if live is None
            else f"; limiter: {live.checked} live counters, {len(live.differences)} differences, "
            f"{sum(not d.within for d in live.differences)} beyond tolerance"
        )
        + f": {verdict}"
    )
    if not ok:
        raise typer.Exit(1)


def _limiter_check(store: LedgerStore, cfg: Config, edge_seconds: float) -> LimiterCheck:
    """The live Redis counters against the ledger (one line and exit 2 when Redis cannot be read)."""
    require_extra("gateway")  # the Redis client: a config whose counters live in Redis has it
    from redis.exceptions import RedisError

    from maas_metrics.ledger.limiter_check import compare, read_counters

    try:
        counters = read_counters(cfg.storage.url, cfg)
    except RedisError as error:
        fail(f"cannot read the limiter counters (storage.url): {type(error).__name__}", code=2)
    return compare(store.engine, counters, edge_seconds)


def _save(store: LedgerStore, result: Reconciliation, live: LimiterCheck | None) -> None:
    from maas_metrics.ledger.reconcile_log import ReconcileRun, now, save_run

    save_run(
        store.engine,
        ReconcileRun(
            run=now(),
            start=result.start,
            end=result.end,
            ok=result.ok and (live is None or live.ok),
            differences=len(result.differences),
            beyond=sum(not d.within for d in result.differences),
            ledger_tokens=result.ledger_totals["tokens"],
            prometheus_tokens=result.prometheus_totals["tokens"],
            limiter_checked=None if live is None else live.checked,
            limiter_differences=None if live is None else len(live.differences),
        ),
    )


def _print_limiter(live: LimiterCheck, console: Console) -> None:
    if not live.differences:
        console.print(f"Live limiter counters: {live.checked} compared, all equal to the ledger")
        return
    table = Table(title="Live limiter counters (ledger - counter, since each window start)")
    for column in ("user", "limit", "window start", "counter", "ledger", "diff", "tolerance"):
        table.add_column(column, overflow="fold")
    table.add_column("likely cause", overflow="fold")
    for d in live.differences:
        c = d.counter
        table.add_row(
            c.user,
            c.limit.name,
            datetime.fromtimestamp(c.window_start_ms / 1000, UTC).isoformat(timespec="seconds"),
            str(c.value),
            str(d.ledger),
            f"{d.diff:+}",
            str(d.slack),
            d.cause,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.command("reconcile")(reconcile)
